"""What every call on a worker shares; built once by the worker role (``ivr.runtime.worker``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ivr.calls.recording import RecordingFinisher
from ivr.core.config import Settings
from ivr.dialplan.loader import PlanRegistry
from ivr.prompts.library import PromptLibrary
from ivr.queues.store import QueueStore
from ivr.sip.bridge import SipThread
from ivr.sip.legs import Leg
from ivr.speech.client import SpeechClient


@dataclass
class WorkerContext:
    name: str
    settings: Settings
    store: QueueStore
    sip: SipThread
    plans: PlanRegistry
    prompts: PromptLibrary
    moh_path: str
    new_leg: Callable[[], Leg]
    speech: SpeechClient | None = None  # None: speech disabled, menus take keys only
    finisher: RecordingFinisher | None = None  # None: recordings are not kept (no store)

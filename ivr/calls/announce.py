"""Position and estimated-wait announcements while a caller waits in a queue.

The dial plan's ``queue`` node may say ``announce: {every_s, position, wait_time}``. While the caller
waits, every ``every_s`` seconds (the first one ``every_s`` after the caller was queued, not right
after the queue prompt) the caller hears, in the call's language::

    You are number 2 in the queue. The estimated wait is about 3 minutes.
    대기 순번은 2번입니다. 예상 대기 시간은 약 3분입니다.

("less than a minute" / "1분 미만" under a minute). Position and wait are read from the queue
store at each announcement (:meth:`QueueStore.wait_estimate`, method in :mod:`ivr.queues.estimate`);
nothing is said while the call is not waiting (an offer to an agent is in flight). The text is a
template rendered with :func:`ivr.dialplan.templates.render` and spoken through the prompt library
(cached, so a repeated text is synthesised once).

The announcement is played *solo*: the music on hold is paused for it (not stopped: it resumes
where it was) and resumes when it ends. When an offer reaches the call, :meth:`interrupt` stops an
announcement in progress at once (or one being prepared), so connecting to the agent is never
delayed; :meth:`close` ends the announcer when the call leaves the queue.
"""

from __future__ import annotations

import asyncio
import contextlib

from ivr.core.logging import get_logger
from ivr.dialplan.ports import QueueTarget
from ivr.dialplan.templates import render
from ivr.prompts.library import PromptLibrary, PromptSpec
from ivr.queues.estimate import wait_minutes
from ivr.queues.store import QueueStore
from ivr.sip.legs import Leg, LegEnded

log = get_logger(__name__)

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "position": "You are number {position} in the queue.",
        "wait": "The estimated wait is {wait}.",
        "under_a_minute": "less than a minute",
        "one_minute": "about 1 minute",
        "minutes": "about {minutes} minutes",
    },
    "ko": {
        "position": "대기 순번은 {position}번입니다.",
        "wait": "예상 대기 시간은 {wait}입니다.",
        "under_a_minute": "1분 미만",
        "one_minute": "약 1분",
        "minutes": "약 {minutes}분",
    },
}
DEFAULT_LANGUAGE = "en"


def text_language(language: str, default_language: str = DEFAULT_LANGUAGE) -> str:
    """The language the announcement is said in: the call's if there are texts for it, else the
    plan's default, else English."""
    for lang in (language, language.split("-")[0].split("_")[0], default_language):
        if lang in TEXTS:
            return lang
    return DEFAULT_LANGUAGE


def announcement_text(language: str, *, position: int | None, wait_s: float | None) -> str:
    """The sentence(s) to say; ``None`` leaves that part out. ``language`` must be one of :data:`TEXTS`."""
    t = TEXTS[language]
    parts = []
    if position is not None:
        parts.append(render(t["position"], {"position": str(position)}))
    if wait_s is not None:
        minutes = wait_minutes(wait_s)
        wait = (t["under_a_minute"] if minutes == 0 else t["one_minute"] if minutes == 1
                else render(t["minutes"], {"minutes": str(minutes)}))
        parts.append(render(t["wait"], {"wait": wait}))
    return " ".join(parts)


class QueueAnnouncer:
    """Runs the announcements of one waiting call (see the module docstring)."""

    def __init__(self, *, leg: Leg, store: QueueStore, prompts: PromptLibrary, call_id: str,
                 target: QueueTarget, language: str, default_language: str = DEFAULT_LANGUAGE) -> None:
        self.leg = leg
        self.store = store
        self.prompts = prompts
        self.call_id = call_id
        self.every_s = target.announce_every_s
        self.say_position = target.announce_position
        self.say_wait = target.announce_wait
        self.language = text_language(language, default_language)
        self._task: asyncio.Task[None] | None = None
        self._cycle: asyncio.Future[None] | None = None
        self.played = 0

    @property
    def enabled(self) -> bool:
        return bool(self.every_s) and (self.say_position or self.say_wait)

    def start(self) -> QueueAnnouncer:
        """Start announcing (nothing happens when the queue node has no announcements)."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"announce-{self.call_id}")
        return self

    def interrupt(self) -> None:
        """An offer arrived: stop the announcement being said or prepared, now. Later ones still
        come (they are skipped while the call is not waiting)."""
        if self._cycle is not None and not self._cycle.done():
            self._cycle.cancel()

    async def close(self) -> None:
        """Stop announcing; returns when no announcement plays any more (the music is resumed)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        assert self.every_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 1
        while True:
            await asyncio.sleep(max(0.0, started + n * self.every_s - loop.time()))
            n = int((loop.time() - started) // self.every_s) + 1  # an overlong one skips a turn
            cycle = self._cycle = asyncio.ensure_future(self._announce_once())
            try:
                await asyncio.wait({cycle})
            finally:
                if not cycle.done():  # we are being closed: let the announcement clean up first
                    cycle.cancel()
                    await asyncio.wait({cycle})
            if cycle.cancelled():
                log.info("queue.announcement_interrupted")
                continue
            exc = cycle.exception()
            if isinstance(exc, LegEnded):
                return
            if exc is not None:  # never ends the call: the caller goes on waiting with music
                log.warning("queue.announcement_failed", error=repr(exc))

    async def _announce_once(self) -> None:
        status = await self.store.wait_estimate(self.call_id)
        if status is None:
            return  # not waiting: an offer is in flight
        await self.store.remember_estimate(self.call_id, status)
        text = announcement_text(self.language, position=status.position if self.say_position else None,
                                 wait_s=status.seconds if self.say_wait else None)
        path = await self.prompts.resolve_async(PromptSpec(text=text), self.language)
        # Shielded: once the player exists it must be stopped (that resumes the music) even if we
        # are interrupted while the SIP thread creates it.
        starting = asyncio.ensure_future(self.leg.start_playback(str(path), solo=True))
        try:
            player_id, done = await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                player_id, _ = await starting
                await self.leg.stop_playback(player_id)
            raise
        self.played += 1
        log.info("queue.announcement", n=self.played, position=status.position, waiting=status.waiting,
                 wait_s=round(status.seconds, 1), basis=status.basis, language=self.language, text=text)
        try:
            await self.leg.until(done, None)
        finally:
            if not self.leg.is_ended:
                await self.leg.stop_playback(player_id)
        log.info("queue.announcement_done", n=self.played)

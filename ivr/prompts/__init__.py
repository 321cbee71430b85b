"""Prompts: recordings and synthesised speech normalised for the phone, and music on hold.

What is built from dial plans (every prompt of every plan, ``ivr prompts build``) lives with the
plans: :mod:`ivr.dialplan.prompt_build`."""

from ivr.prompts.library import PromptLibrary, PromptSpec
from ivr.prompts.moh import music_on_hold

__all__ = ["PromptLibrary", "PromptSpec", "music_on_hold"]

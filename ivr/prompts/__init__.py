"""Prompts: recordings and synthesised speech normalised for the phone, and music on hold."""

from ivr.prompts.library import PromptLibrary, PromptSpec
from ivr.prompts.moh import music_on_hold

__all__ = ["PromptLibrary", "PromptSpec", "music_on_hold"]

"""Prompts: recordings and synthesised speech normalised for the phone, and music on hold."""

from ivr.prompts.build import BuildReport, PromptIssue, build_plan_prompts, check_prompt, spec_for
from ivr.prompts.library import PromptLibrary, PromptSpec
from ivr.prompts.moh import music_on_hold

__all__ = ["BuildReport", "PromptIssue", "PromptLibrary", "PromptSpec", "build_plan_prompts", "check_prompt",
           "music_on_hold", "spec_for"]

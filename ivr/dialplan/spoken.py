"""Prompts the engine makes up from a plan: digits read back one by one, and the options suggested
after a wrong answer.

* **Read-back** (:func:`read_back`): the plan's ``confirm.read_back`` prompt with each spoken digit
  as a prompt of its own where the text says ``{digits}``. A digit is a one-word prompt
  (:class:`SpokenDigit`, ``one``/``일``), so the digit string is never one rendered text: the prompt
  cache and its log line (``prompt.rendered`` shows the text) hold single digits only, and the build
  renders all ten per language before any call (:func:`generated_prompts`), so a call renders none.
  A recording (``file``) is played after the digits.
* **Suggestion** (:func:`suggestion`): after a wrong answer at a menu without a ``no_match`` prompt,
  "You can say billing or support, or press 1 or 2." from the menu's options in the call's
  language (``en`` and ``ko`` texts; other languages get the English one). Of an option's phrases the
  first written in the language's script is named (Hangul for ``ko``, no Hangul otherwise), else its
  first phrase. Only for a menu whose own prompt is a text (spoken by the voice of the language):
  a menu played from a recording keeps to recordings, so a plan of recordings needs no voice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ivr.dialplan.model import CollectNode, MenuNode, Plan, Prompt

#: How each digit is spoken, per language; other languages speak the digit character.
DIGIT_SPEECH: dict[str, tuple[str, ...]] = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "ko": ("공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"),
}

#: (say and press, say only, press only, the word between the last two items, between the others)
_SUGGEST: dict[str, tuple[str, str, str, str, str]] = {
    "en": ("You can say {say}, or press {press}.", "You can say {say}.", "You can press {press}.", " or ", ", "),
    "ko": ("{say} 중 하나를 말씀하시거나, {press}번을 누르세요.", "{say} 중 하나를 말씀하세요.",
           "{press}번을 누르세요.", ", ", ", "),
}
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


class SpokenDigit(Prompt):
    """One digit of a read-back, spoken as a word (a simulator masks it for a secret entry)."""


def _base(language: str) -> str:
    return language.split("-")[0].split("_")[0].lower()


def digit_prompt(digit: str, language: str) -> SpokenDigit:
    words = DIGIT_SPEECH.get(_base(language))
    return SpokenDigit(text=words[int(digit)] if words and digit.isdigit() else digit)


def read_back(prompt: Prompt, digits: str, language: str, default_language: str) -> tuple[Prompt, ...]:
    """The prompts that read ``digits`` back: the text before ``{digits}``, one prompt per digit, the
    text after it (a recording: the digits, then the recording)."""
    spoken = tuple(digit_prompt(d, language) for d in digits)
    text = prompt.text_for(language, default_language)
    if prompt.file is not None or not text or "{digits}" not in text:
        return (*spoken, prompt)
    before, _, after = text.partition("{digits}")
    after = after.lstrip(" ,.")
    head = (Prompt(text=before),) if any(ch.isalnum() for ch in before) else ()
    tail = (Prompt(text=after),) if any(ch.isalnum() for ch in after) else ()
    return (*head, *spoken, *tail)


def _in_script(phrase: str, language: str) -> bool:
    return bool(_HANGUL.search(phrase)) == (_base(language) == "ko")


def _join(items: list[str], last: str, sep: str) -> str:
    return items[0] if len(items) == 1 else sep.join(items[:-1]) + last + items[-1]


def suggestion_text(node: MenuNode, language: str) -> str | None:
    """What to say after a wrong answer at ``node``; None when it has nothing to offer."""
    both, say_only, press_only, last, sep = _SUGGEST.get(_base(language), _SUGGEST["en"])
    say: list[str] = []
    if node.listen.enabled:
        for option in node.options:
            if option.say:
                say.append(next((p for p in option.say if _in_script(p, language)), option.say[0]))
    press = [o.digit for o in node.options if o.digit is not None]
    if not say and not press:
        return None
    said = _join(say, last, sep).replace("{", "{{").replace("}", "}}") if say else ""  # not a template
    pressed = _join(press, last, sep) if press else ""
    if say and press:
        return both.format(say=said, press=pressed)
    return say_only.format(say=said) if say else press_only.format(press=pressed)


def suggestion(node: MenuNode, language: str) -> Prompt | None:
    """The suggestion prompt of ``node``: None for a menu played from a recording, or with nothing to offer."""
    if node.prompt.file is not None:
        return None
    text = suggestion_text(node, language)
    return None if text is None else Prompt(text=text)


def generated_prompts(plan: Plan) -> Iterator[tuple[str, str, str, Prompt]]:
    """Every made-up prompt a call on ``plan`` can play, as (node, field, language, prompt), for the
    build: suggestions of menus without ``no_match``, the digits and the read-back texts of
    collects that listen."""
    languages = plan.languages()
    reads = any(isinstance(n, CollectNode) and n.listen.enabled and n.read_back for n in plan.nodes.values())
    for language in languages:
        for name, node in plan.nodes.items():
            if isinstance(node, MenuNode) and node.no_match is None:
                prompt = suggestion(node, language)
                if prompt is not None:
                    yield name, "no_match (suggested)", language, prompt
        if reads:
            for prompt in read_back(plan.confirm.read_back, "0123456789", language, plan.language):
                yield "-", "confirm.read_back", language, prompt

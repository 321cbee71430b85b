"""Pre-building the prompts of dial plans, and turning a dial-plan prompt into a :class:`PromptSpec`.

Every prompt of every plan is rendered in every language a call on that plan can be in
(:meth:`Plan.languages`), so that a call never waits for espeak-ng or ffmpeg and never meets a
broken prompt:

* a recording is looked up under ``prompts/<language>/``; missing there for a language other than
  the plan's default, the default language's recording is used and the build reports a *warning*;
  missing in the default language too, or undecodable, is an *error*;
* a text is spoken with the voice configured for the language (no voice configured is an error);
* a text with ``{placeholders}`` is rendered per call at run time: the build speaks it once with
  sample values instead, to prove the voice and the text work;
* the prompts the engine makes up (:func:`ivr.dialplan.spoken.generated_prompts`: the options
  suggested after a wrong answer, the digits and texts of a read-back) are rendered too, so a call
  never renders a caller's digits (field ``no_match (suggested)`` or ``confirm.read_back``).

``ivr prompts build`` and ``ivr run`` (before it starts any worker) use :func:`build_plan_prompts`;
an error stops them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from ivr.core.errors import PromptError
from ivr.dialplan.spoken import generated_prompts
from ivr.dialplan.templates import names, render
from ivr.prompts.library import PromptLibrary, PromptSpec

if TYPE_CHECKING:
    from ivr.core.config import Settings
    from ivr.dialplan.model import Plan, Prompt

#: What a placeholder becomes when a template is spoken at build time.
SAMPLE_VALUE = "1234"


class _Samples(dict[str, str]):
    """Every variable a template names, as the sample value."""

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return SAMPLE_VALUE


class PlanPrompt(Protocol):
    """What :func:`spec_for` needs of :class:`ivr.dialplan.model.Prompt`."""

    @property
    def file(self) -> str | None: ...

    def text_for(self, language: str, default_language: str) -> str | None: ...


def is_template(text: str | None) -> bool:
    """True when ``text`` has ``{placeholders}`` filled in per call (the grammar calls use:
    :mod:`ivr.dialplan.templates`)."""
    return bool(text and names(text))


def sample_text(text: str) -> str:
    """``text`` with every placeholder replaced by a sample value (what the build speaks)."""
    return render(text, _Samples())


def spec_for(prompt: PlanPrompt, language: str, default_language: str) -> PromptSpec:
    """The :class:`PromptSpec` a call in ``language`` plays for a dial-plan ``prompt``.

    The text is the one for ``language`` (:meth:`Prompt.text_for`), still a template: render its
    placeholders before resolving it. A recording missing in ``language`` falls back to
    ``default_language``'s folder.
    """
    fallback = default_language if default_language != language else None
    return PromptSpec(file=prompt.file, text=prompt.text_for(language, default_language),
                      fallback_language=fallback)


@dataclass(frozen=True)
class PromptIssue:
    """A prompt that fails (``error``) or plays something else than asked (``warning``)."""

    severity: Literal["error", "warning"]
    plan: str  # the plan's file (or name)
    node: str
    field: str
    language: str
    code: str
    message: str

    def __str__(self) -> str:
        return (f"{self.severity}: {self.plan}: {self.node}.{self.field} [{self.language}]: "
                f"{self.code}: {self.message}")


@dataclass
class BuildReport:
    """Counts are per (prompt, language); ``cached`` ones were already in the cache."""

    rendered: int = 0
    cached: int = 0
    templates: int = 0  # rendered per call; spoken once with sample values to test them
    issues: list[PromptIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[PromptIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[PromptIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def merge(self, other: BuildReport) -> None:
        self.rendered += other.rendered
        self.cached += other.cached
        self.templates += other.templates
        self.issues.extend(other.issues)

    def summary(self) -> str:
        return (f"{self.rendered} rendered, {self.cached} cache hits, {self.templates} templates tested, "
                f"{len(self.errors)} errors, {len(self.warnings)} warnings")


def check_prompt(
    library: PromptLibrary, prompt: PlanPrompt, language: str, default_language: str
) -> tuple[bool, str | None]:
    """Render (or find in the cache) ``prompt`` for a call in ``language``.

    Returns ``(rendered, warning)``: whether it was rendered now (False: cache hit) and a warning
    when a recording falls back to the default language. Raises :class:`PromptError` when the
    prompt cannot be played. A template is spoken with sample values.
    """
    spec = spec_for(prompt, language, default_language)
    warning = None
    if spec.file:
        source = library.source_file(spec, language)
        if source is not None and not Path(spec.file).is_absolute() \
                and not source.is_relative_to(library.source_dir / language):
            warning = (f"{spec.file!r} has no {language!r} recording; the {default_language!r} one "
                       f"({source}) is played")
    elif is_template(spec.text):
        spec = PromptSpec(text=sample_text(spec.text or ""))
    _, rendered = library.ensure(spec, language)
    return rendered, warning


def _every_prompt(plan: Plan) -> Iterator[tuple[str, str, str, Prompt, bool]]:
    """``(node, field, language, prompt, written)`` for the plan's own prompts in each of its languages
    (``written``), then the prompts the engine generates (suggested options, read-back digits)."""
    for language in plan.languages():
        for node, field_name, prompt in plan.prompts():
            yield node, field_name, language, prompt, True
    for node, field_name, language, prompt in generated_prompts(plan):
        yield node, field_name, language, prompt, False


def build_plan_prompts(library: PromptLibrary, plans: Iterable[tuple[str | Path, Plan]]) -> BuildReport:
    """Render every prompt of every ``(label, plan)`` in every language of the plan.

    Never raises for a prompt: each failure is an ``error`` issue naming the plan, node, field and
    language, and the build goes on with the next one.
    """
    report = BuildReport()
    for label, plan in plans:
        for node, field_name, language, prompt, written in _every_prompt(plan):
            where = {"plan": str(label), "node": node, "field": field_name, "language": language}
            try:
                rendered, warning = check_prompt(library, prompt, language, plan.language)
            except PromptError as exc:
                report.issues.append(PromptIssue("error", code=exc.code, message=exc.message, **where))
                continue
            if warning and written:
                report.issues.append(PromptIssue("warning", code="prompt.language_fallback",
                                                 message=warning, **where))
            if written and prompt.file is None and is_template(prompt.text_for(language, plan.language)):
                report.templates += 1
            elif rendered:
                report.rendered += 1
            else:
                report.cached += 1
    return report


def library_for(settings: Settings) -> PromptLibrary:
    """The prompt library every role uses, from the settings."""
    return PromptLibrary(settings.prompts.dir, settings.prompt_cache, settings.workers.clock_rate,
                         settings.prompts.voices)


def build_prompts(settings: Settings, plans: Iterable[tuple[str | Path, Plan]]) -> BuildReport:
    """Everything ``ivr run`` needs before a call: every plan prompt and the music on hold.

    A music-on-hold file that cannot be played is an error of the report (node ``-``, field ``moh``).
    """
    from ivr.prompts.moh import music_on_hold

    report = build_plan_prompts(library_for(settings), plans)
    try:
        music_on_hold(settings.prompt_cache, settings.workers.clock_rate, settings.prompts.moh)
    except PromptError as exc:
        report.issues.append(PromptIssue("error", str(settings.prompts.moh), "-", "moh", "-",
                                         exc.code, exc.message))
    return report

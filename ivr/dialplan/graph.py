"""A dial plan as a Graphviz drawing: ``ivr dialplan graph``.

:func:`to_dot` writes DOT text (one box per node: its name, type and the start of its prompt;
edges labelled with the digit, phrases, condition or field that takes them; failure paths dashed;
nodes where a call can end drawn with a double border). :func:`render` runs Graphviz's ``dot``
(Debian package ``graphviz``) to make SVG, PNG or PDF.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from ivr.core.errors import DialplanError
from ivr.dialplan.model import (
    AnyNode,
    BranchNode,
    CallbackNode,
    CaseNode,
    CaseUpdateNode,
    CollectNode,
    Condition,
    LanguageNode,
    LookupNode,
    MenuNode,
    Plan,
    Prompt,
    SetNode,
    TimeWindow,
    TransferNode,
    is_terminal,
    node_targets,
)

FORMATS = ("dot", "svg", "png", "pdf")
FAILURE_FIELDS = {"on_failure", "on_error", "on_timeout", "declined"}
SHAPES = {"menu": "box", "collect": "box", "survey": "box", "callback": "box", "branch": "diamond",
          "lookup": "cylinder", "set": "note", "language": "note", "play": "box", "queue": "box3d",
          "voicemail": "box", "transfer": "box", "hangup": "octagon", "case": "folder",
          "case_update": "folder"}
FILL = {"menu": "#dbeafe", "collect": "#dbeafe", "survey": "#dbeafe", "callback": "#dbeafe",
        "branch": "#fef3c7", "lookup": "#e0e7ff", "set": "#f3f4f6", "language": "#f3f4f6",
        "play": "#ffffff", "queue": "#dcfce7", "voicemail": "#fce7f3", "transfer": "#dcfce7",
        "hangup": "#fee2e2", "case": "#ffedd5", "case_update": "#ffedd5"}
PROMPT_CHARS = 40
TIMEOUT_S = 60.0


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _short(text: str, limit: int = PROMPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prompt_summary(prompt: Prompt | None, language: str) -> str:
    if prompt is None:
        return ""
    if prompt.file:
        return f"[{prompt.file}]"
    return _short(prompt.text_for(language, language) or "")


def condition_label(cond: Condition) -> str:
    parts: list[str] = []
    if cond.time is not None:
        windows = cond.time if isinstance(cond.time, list) else [cond.time]
        parts.append(" or ".join(_window(w) for w in windows))
    if cond.holiday is not None:
        parts.append(f"holiday {cond.holiday}")
    if cond.open is not None:
        parts.append("open" if cond.open else "closed")
    if cond.caller is not None:
        callers = cond.caller if isinstance(cond.caller, list) else [cond.caller]
        parts.append("caller " + "|".join(callers))
    if cond.var is not None:
        ops = [("==", cond.equals), ("!=", cond.not_equals), ("in", cond.one_of), ("~", cond.matches),
               (">", cond.gt), ("<", cond.lt)]
        parts += [f"{cond.var} {op} {_value(value)}" for op, value in ops if value is not None]
        if cond.exists is not None:
            parts.append(f"{cond.var} {'exists' if cond.exists else 'unset'}")
    text = " and ".join(parts)
    return f"not ({text})" if cond.negate else text


def _value(value: object) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def node_summary(node: AnyNode, language: str) -> str:
    """The third line of a node's box: its prompt, or what it calls, dials or sets."""
    if isinstance(node, LookupNode):
        try:
            host = urlsplit(node.url).hostname or "?"
        except ValueError:
            host = "?"
        return f"{node.method} {host}"
    if isinstance(node, TransferNode):
        return f"to {node.to}"
    if isinstance(node, SetNode):
        return _short(", ".join(node.variables))
    if isinstance(node, LanguageNode):
        return node.language
    if isinstance(node, CaseNode):
        return _short(f"{node.tier}: {node.reason}" if node.reason else node.tier)
    if isinstance(node, CaseUpdateNode):
        return _short(", ".join(node.answers) + (" + reopen" if node.reopen is not False else ""))
    if isinstance(node, CollectNode):
        return _short(f"{{{node.variable}}} " + prompt_summary(node.prompt, language))
    return prompt_summary(getattr(node, "prompt", None), language)


def _window(w: TimeWindow) -> str:
    days = w.days
    day_text = "daily" if len(days) == 7 else (f"{days[0]}-{days[-1]}" if _contiguous(days) else ",".join(days))
    return f"{day_text} {w.start.strftime('%H:%M')}-{w.end.strftime('%H:%M')}"


def _contiguous(days: list[str]) -> bool:
    from ivr.dialplan.model import DAY_NAMES

    idx = [DAY_NAMES.index(d) for d in days]
    return len(idx) > 1 and idx == list(range(idx[0], idx[0] + len(idx)))


def edge_label(node: AnyNode, field: str) -> str:
    parts = field.split(".")
    if isinstance(node, MenuNode) and parts[0] == "options":
        opt = node.options[int(parts[1])]
        return " / ".join([*([opt.digit] if opt.digit else []), *([", ".join(opt.say)] if opt.say else [])])
    if isinstance(node, BranchNode) and parts[0] == "rules":
        return condition_label(node.rules[int(parts[1])].when)
    if isinstance(node, CallbackNode) and field == "next":
        return f"accepted ({node.accept_digit})"
    return "" if field == "next" else field


def to_dot(plan: Plan) -> str:
    """The plan as a DOT digraph."""
    lines = [
        f"digraph {_q(plan.name)} {{",
        f"  graph [rankdir=TB, fontname=\"Helvetica\", label={_q(plan.name + ' (' + ', '.join(plan.numbers) + ')')},"
        " labelloc=t];",
        "  node [fontname=\"Helvetica\", fontsize=10, style=\"filled\"];",
        "  edge [fontname=\"Helvetica\", fontsize=9];",
        "  \"__start\" [shape=point, width=0.15, label=\"\"];",
    ]
    missing: set[str] = set()
    for name, node in plan.nodes.items():
        label = f"{name}\n<{node.type}>"
        summary = node_summary(node, plan.language)
        if summary:
            label += f"\n{summary}"
        attrs = [f"label={_q(label)}", f"shape={SHAPES.get(node.type, 'box')}",
                 f"fillcolor={_q(FILL.get(node.type, '#ffffff'))}"]
        if node.type in ("menu", "collect", "survey", "callback", "play", "voicemail", "transfer"):
            attrs.append('style="filled,rounded"' if SHAPES.get(node.type) == "box" else 'style="filled"')
        if is_terminal(node):
            attrs.append("peripheries=2")
        if name == plan.start:
            attrs.append("penwidth=2")
        lines.append(f"  {_q(name)} [{', '.join(attrs)}];")
    lines.append(f"  \"__start\" -> {_q(plan.start)};")
    for name, node in plan.nodes.items():
        for field, target in node_targets(node):
            if target not in plan.nodes:
                missing.add(target)
            attrs = []
            label = edge_label(node, field)
            if label:
                attrs.append(f"label={_q(_short(label, 48))}")
            if field in FAILURE_FIELDS:
                attrs += ["style=dashed", "color=\"#b91c1c\"", "fontcolor=\"#b91c1c\""]
            elif field == "default":
                attrs.append("style=dotted")
            suffix = f" [{', '.join(attrs)}]" if attrs else ""
            lines.append(f"  {_q(name)} -> {_q(target)}{suffix};")
    for target in sorted(missing):
        lines.append(f"  {_q(target)} [label={_q(target + chr(10) + '(missing)')}, shape=box, style=dashed,"
                     " color=\"#b91c1c\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, out: Path, fmt: str, *, dot: str = "dot") -> None:
    """Run Graphviz ``dot`` to write ``out`` in ``fmt`` (svg, png, pdf)."""
    if fmt not in FORMATS or fmt == "dot":
        raise DialplanError(f"cannot render format {fmt!r} (use {', '.join(FORMATS)})", code="dialplan.graph")
    try:
        result = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=dot_text.encode(), capture_output=True,
                                timeout=TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise DialplanError(f"Graphviz is not installed: {dot!r} not found (Debian package graphviz; "
                            "deploy/install-system.sh installs it)", code="dialplan.graphviz_missing") from exc
    except subprocess.TimeoutExpired as exc:
        raise DialplanError(f"{dot} took more than {TIMEOUT_S:g} s", code="dialplan.graph") from exc
    if result.returncode != 0:
        raise DialplanError(f"{dot} failed (exit {result.returncode}): "
                            f"{result.stderr.decode(errors='replace').strip()}", code="dialplan.graph")


def format_for(out: Path | None, fmt: str | None) -> str:
    """The output format: given, or from the output file's suffix, or DOT."""
    if fmt:
        return fmt
    suffix = out.suffix.lower().lstrip(".") if out is not None else ""
    if suffix in FORMATS:
        return suffix
    if suffix == "gv":
        return "dot"
    if out is None:
        return "dot"
    raise DialplanError(f"cannot tell the format of {out} (use --format {'|'.join(FORMATS)})",
                        code="dialplan.graph")

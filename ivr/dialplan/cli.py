"""``ivr dialplan ...``: check, schema, graph (versions and rollback are added next to them).

Each subcommand is one ``_add_<name>`` function that declares its arguments and one function that
runs it and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ivr.core.config import Settings, load_settings
from ivr.core.logging import configure
from ivr.dialplan.versions import add_versions_parsers


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dp = sub.add_parser("dialplan", help="dial-plan tools")
    dsub = dp.add_subparsers(dest="dcmd", required=True)
    _add_check(dsub)
    _add_schema(dsub)
    _add_graph(dsub)
    add_versions_parsers(dsub)


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings of ``--config`` (defaults and ``IVR_...`` environment otherwise)."""
    config = getattr(args, "config", None)
    return load_settings(Path(config) if config else None)


# --- check ---------------------------------------------------------------------------------------
def _add_check(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chk = dsub.add_parser("check", help="validate dial-plan files (default: every plan of dialplans_dir)")
    chk.add_argument("files", nargs="*", help="plan files; default: top-level *.yaml of settings' dialplans_dir")
    chk.add_argument("--config", help="YAML settings file (lookup hosts, transfer globs, prompt directory)")
    chk.add_argument("--no-prompts", action="store_true", help="do not look for or decode prompt files")
    chk.add_argument("--format", choices=("text", "json"), default="text")
    chk.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    from ivr.dialplan.checks import check_files
    from ivr.dialplan.loader import plan_files

    settings = settings_from(args)
    configure("warning", "console", role="dialplan-check")  # logs on stderr: stdout is the report (JSON too)
    files = [Path(f) for f in args.files] or plan_files(settings.dialplans_dir)
    problems = check_files(files, settings, prompts=not args.no_prompts)
    failed = {p.file for p in problems if p.severity == "error"}
    if args.format == "json":
        json.dump({"ok": not failed, "files": [{"file": str(f), "ok": str(f) not in failed} for f in files],
                   "problems": [p.to_dict() for p in problems]}, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        for p in problems:
            print(p)
        for f in files:
            if str(f) not in failed:
                print(f"{f}: ok")
        if not files:
            print(f"no dial plans in {settings.dialplans_dir}", file=sys.stderr)
    return 1 if failed or not files else 0


# --- schema --------------------------------------------------------------------------------------
def _add_schema(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sch = dsub.add_parser("schema", help="write the JSON Schema of dial-plan files (for editors)")
    sch.add_argument("-o", "--output", help="file to write (default: standard output)")
    sch.set_defaults(func=schema)


def schema(args: argparse.Namespace) -> int:
    from ivr.dialplan.loader import plan_schema

    text = json.dumps(plan_schema(), ensure_ascii=False, indent=2) + "\n"
    if args.output and args.output != "-":
        return write_output("schema", Path(args.output), text)
    sys.stdout.write(text)
    return 0


def output_problem(out: Path) -> str | None:
    """Why ``out`` cannot be written (a missing directory, a directory in its place), or None."""
    if not out.parent.is_dir():
        return f"cannot write {out}: the directory {out.parent} does not exist"
    if out.is_dir():
        return f"cannot write {out}: it is a directory"
    return None


def write_output(command: str, out: Path, text: str) -> int:
    """Write ``text`` to ``out``; a clear message and exit status 2 instead of a traceback."""
    problem = output_problem(out)
    if problem is None:
        try:
            out.write_text(text, encoding="utf-8")
            return 0
        except OSError as exc:
            problem = f"cannot write {out}: {exc.strerror or exc}"
    print(f"ivr dialplan {command}: {problem}", file=sys.stderr)
    return 2


# --- graph ---------------------------------------------------------------------------------------
def _add_graph(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gr = dsub.add_parser("graph", help="draw a plan with Graphviz (svg, png, pdf) or write its DOT text")
    gr.add_argument("file")
    gr.add_argument("-o", "--output", help="output file; its suffix picks the format (default: DOT to stdout)")
    gr.add_argument("--format", choices=("dot", "svg", "png", "pdf"), help="output format")
    gr.set_defaults(func=graph)


def graph(args: argparse.Namespace) -> int:
    from ivr.dialplan.graph import format_for, render, to_dot
    from ivr.dialplan.loader import read_plan

    try:
        loaded, problems = read_plan(Path(args.file))
    except OSError as exc:
        print(f"{args.file}:1:1: error: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    if loaded is None:
        return 1
    out = Path(args.output) if args.output and args.output != "-" else None
    fmt = format_for(out, args.format)
    dot_text = to_dot(loaded.plan)
    if fmt == "dot":
        if out is None:
            sys.stdout.write(dot_text)
            return 0
        return write_output("graph", out, dot_text)
    if out is None:
        print("ivr dialplan graph: -o FILE is needed for " + fmt, file=sys.stderr)
        return 2
    problem = output_problem(out)
    if problem is not None:
        print(f"ivr dialplan graph: {problem}", file=sys.stderr)
        return 2
    render(dot_text, out, fmt)
    print(f"{out}: written")
    return 0

"""``ivr dialplan ...``: check, schema, graph, versions, rollback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ivr.core.errors import IvrError
from ivr.dialplan.versions import add_versions_parsers


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dp = sub.add_parser("dialplan", help="dial-plan tools")
    dsub = dp.add_subparsers(dest="dcmd", required=True)
    chk = dsub.add_parser("check", help="validate dial-plan files")
    chk.add_argument("files", nargs="*")
    chk.set_defaults(func=check)
    add_versions_parsers(dsub)


def check(args: argparse.Namespace) -> int:
    from ivr.dialplan.loader import load_plan

    files = [Path(f) for f in args.files] or sorted(Path("dialplans").glob("*.y*ml"))
    bad = 0
    for f in files:
        try:
            load_plan(f)
            print(f"{f}: ok")
        except (IvrError, OSError) as exc:
            bad += 1
            print(f"{getattr(exc, 'message', exc)}", file=sys.stderr)
    return 1 if bad else 0

"""``ivr prompts build``: render every prompt of the dial plans (and the music on hold) into the cache."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = sub.add_parser("prompts", help="prompt tools")
    psub = pp.add_subparsers(dest="pcmd", required=True)
    build = psub.add_parser(
        "build", help="render every prompt of every dial plan into the cache; exit 1 on any error",
        description="Renders every prompt of the given dial plans (default: the top-level *.yaml of "
                    "dialplans_dir) in every language of each plan, and the music on hold. Entries "
                    "already in the cache are not rendered again.")
    build.add_argument("--config", help="YAML settings file (defaults are embedded)")
    build.add_argument("files", nargs="*", type=Path, help="dial-plan files (default: dialplans_dir/*.yaml)")
    build.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ivr.core.config import load_settings
    from ivr.core.errors import IvrError
    from ivr.core.logging import configure
    from ivr.dialplan.loader import load_plan, plan_files
    from ivr.dialplan.prompt_build import BuildReport, build_prompts

    settings = load_settings(Path(args.config) if args.config else None)
    configure("warning", "console", role="prompts")  # the report below is the output; logs only on trouble
    files = list(args.files) or plan_files(settings.dialplans_dir)
    if not files:
        print(f"ivr prompts build: no dial plans in {settings.dialplans_dir}", file=sys.stderr)
        return 1
    started = time.monotonic()
    plans = []
    bad_plans = 0
    for path in files:
        try:
            plans.append((str(path), load_plan(path).plan))
        except (IvrError, OSError) as exc:
            bad_plans += 1
            print(f"error: {path}: {getattr(exc, 'message', exc)}", file=sys.stderr)
    report: BuildReport = build_prompts(settings, plans)
    for issue in report.issues:
        print(issue, file=sys.stderr)
    print(f"prompts: {len(plans)} plans, {report.summary()}, cache {settings.prompt_cache}, "
          f"{time.monotonic() - started:.1f} s")
    return 1 if bad_plans or report.errors else 0

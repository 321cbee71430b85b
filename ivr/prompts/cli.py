"""``ivr prompts ...`` (stub; filled in by the prompts work)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = sub.add_parser("prompts", help="prompt tools")
    psub = pp.add_subparsers(dest="pcmd", required=True)
    build = psub.add_parser("build", help="render every prompt of every dial plan into the cache")
    build.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    raise SystemExit("ivr prompts build: not implemented yet")

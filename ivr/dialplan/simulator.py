"""``ivr simulate``: walk a dial plan without SIP (stub; filled in by the simulator work)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("simulate", help="walk a dial plan without a phone")
    sim.add_argument("file")
    sim.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    raise SystemExit("ivr simulate: not implemented yet")

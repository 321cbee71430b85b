"""The ``ivr`` command."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ivr.core.config import Settings, load_settings
from ivr.core.errors import IvrError
from ivr.core.logging import configure


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "settings", None):
        return load_settings(Path(args.settings))
    overrides = {}
    if getattr(args, "workers", None):
        overrides["workers"] = {"count": args.workers}
    return load_settings(Path(args.config) if args.config else None, **overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ivr", description="Customer-service hotline")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start the whole hotline on this machine")
    run.add_argument("--config", help="YAML settings file (defaults are embedded)")
    run.add_argument("--workers", type=int, help="number of SIP worker processes")
    for role in ("worker", "api", "speech", "transcriber"):
        rp = sub.add_parser(role, help=f"run the {role} role (started by `ivr run` or systemd)")
        rp.add_argument("--settings", help="settings JSON written by `ivr run`")
        rp.add_argument("--config", help="YAML settings file")
        if role == "worker":
            rp.add_argument("--index", type=int, default=0)
            rp.add_argument("--name", type=_worker_name, default=None,
                            help="worker id in Redis (default w<index>); unique across hosts, e.g. hostA-w0")
    pool = sub.add_parser("worker-pool", help="(internal, started by `ivr run`) the parent the workers are "
                                              "forked from")
    pool.add_argument("--settings", required=True, help="settings JSON written by `ivr run`")
    pool.add_argument("--fd", type=int, required=True, help="the socket inherited from `ivr run`")
    ph = sub.add_parser("phones", help="poll the edge's registrations into Redis (systemd: ivr-phones.service, "
                                       "on the edge host of a multi-host deployment; `ivr run` does it itself)")
    ph.add_argument("--config", help="YAML settings file")
    ph.add_argument("--edge-dir", default="/run/ivr-edge/kamailio",
                    help="where the running edge keeps its config, db/ tables and control socket")
    ph.add_argument("--name", type=_worker_name, default=None,
                    help="this poller's name in Redis (default: the host name); one per edge")
    dep = sub.add_parser("deploy", help="deployment tools")
    depsub = dep.add_subparsers(dest="depcmd", required=True)
    from ivr.runtime.render import add_render_arguments

    add_render_arguments(depsub.add_parser(
        "render", help="write the Kamailio, Redis and Sentinel configs for a (multi-host) deployment"))
    # Tool commands live next to what they work on; each adds its parser and sets ``func``.
    from ivr.dialplan import cli as dialplan_cli
    from ivr.dialplan import prompts_cli, simulator

    dialplan_cli.add_parser(sub)
    simulator.add_parser(sub)
    prompts_cli.add_parser(sub)
    from ivr.queues import report

    report.add_parser(sub)
    args = p.parse_args(argv)

    try:
        if getattr(args, "func", None) is not None:
            return int(args.func(args))
        if args.cmd == "deploy":
            from ivr.runtime.render import main as render_main

            return render_main(args)
        if args.cmd == "worker-pool":
            from ivr.runtime.forkserver import main as pool_main

            return pool_main(Path(args.settings), args.fd)
        settings = _settings(args)
        configure(settings.log_level, settings.log_format, role=args.cmd)
        if args.cmd == "run":
            from ivr.runtime.supervisor import main as run_main

            return run_main(settings)
        if args.cmd == "worker":
            from ivr.runtime.worker import main as worker_main

            worker_main(settings, args.index, args.name)
        elif args.cmd == "phones":
            from ivr.runtime.phones import main as phones_main

            phones_main(settings, Path(args.edge_dir), args.name)
        elif args.cmd == "api":
            from ivr.cti.app import main as api_main

            api_main(settings)
        elif args.cmd == "speech":
            from ivr.speech.server import run as speech_main

            speech_main(settings.speech)
        elif args.cmd == "transcriber":
            from ivr.quality.transcriber import main as transcriber_main

            transcriber_main(settings)
        return 0
    except IvrError as exc:
        print(f"ivr: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _worker_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise argparse.ArgumentTypeError(f"{value!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return value


if __name__ == "__main__":
    sys.exit(main())

"""``ivr dialplan versions PLAN`` and ``ivr dialplan rollback PLAN [VERSION]``.

Both work on this host's version archive (``<var_dir>/dialplans``) and dial-plan directory, found
through the same settings as ``ivr run`` (``--config`` YAML, ``--settings`` JSON, ``IVR_...``).
A rollback writes the archived content to the plan file; the running workers load it within
``dialplan.reload_poll_s``.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from ivr.core.config import Settings, load_settings
from ivr.dialplan.registry import VersionArchive


def add_versions_parsers(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ver = dsub.add_parser("versions", help="list the archived versions of a dial plan")
    ver.add_argument("plan", help="plan id: the file name without extension (hotline for hotline.yaml)")
    _settings_arguments(ver)
    ver.set_defaults(func=versions)
    rb = dsub.add_parser("rollback", help="put an archived version of a dial plan back in service")
    rb.add_argument("plan", help="plan id: the file name without extension")
    rb.add_argument("version", nargs="?", help="version to restore (default: the previous one)")
    _settings_arguments(rb)
    rb.set_defaults(func=rollback)


def _settings_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML settings file (as given to ivr run)")
    p.add_argument("--settings", help="settings JSON written by ivr run (<var>/run/settings.json)")


def _load(args: argparse.Namespace) -> tuple[Settings, VersionArchive]:
    path = args.settings or args.config
    settings = load_settings(Path(path) if path else None)
    return settings, VersionArchive(settings.var_dir / "dialplans", settings.dialplan.keep_versions)


def versions(args: argparse.Namespace) -> int:
    _, archive = _load(args)
    entries = archive.history(args.plan)
    if not entries:
        print(f"no archived versions of dial plan {args.plan}")
        return 1
    print(f"  {'VERSION':<12}  {'ACTIVATED (UTC)':<29}  {'SOURCE':<8}  BY")
    for i, e in enumerate(reversed(entries)):
        print(f"{'*' if i == 0 else ' '} {e.version:<12}  {e.activated_at:<29}  {e.source:<8}  {e.by}")
    return 0


def rollback(args: argparse.Namespace) -> int:
    settings, archive = _load(args)
    previous = archive.current(args.plan)
    entry = archive.rollback(args.plan, settings.dialplans_dir, args.version, by=f"cli:{getpass.getuser()}")
    print(f"{args.plan}: {previous.version if previous else '-'} -> {entry.version} written to "
          f"{settings.dialplans_dir / entry.file}; workers load it within {settings.dialplan.reload_poll_s}s")
    return 0

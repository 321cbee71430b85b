"""Placeholder: filled by the issue-21 work (see /work/coord/contract-21.md)."""

from __future__ import annotations

from aiohttp import web


def routes() -> list[web.RouteDef]:
    return []

"""``edge.webrtc.ice_servers``: the STUN/TURN servers the desktop's browser phone is given
(``GET /api/v1/agents/{id}/webrtc``, :func:`ivr.cti.webrtc.ice_servers`), validated like every setting."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ivr.core.config import Settings
from ivr.cti.webrtc import ice_servers


def settings(servers: list[dict[str, Any]]) -> Settings:
    return Settings.model_validate({"edge": {"webrtc": {"ice_servers": servers}}})


def test_none_by_default() -> None:
    assert ice_servers(Settings()) == []


def test_stun_and_turn_servers_reach_the_page_as_rtc_ice_servers() -> None:
    got = ice_servers(settings([
        {"urls": ["stun:stun.example.com:3478"]},
        {"urls": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"],
         "username": "desk", "credential": "s3cret-Turn"},
        {"urls": ["turn:[2001:db8::1]:3478"], "username": "desk", "credential": "x"},
    ]))
    assert got == [
        {"urls": ["stun:stun.example.com:3478"]},
        {"urls": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"],
         "username": "desk", "credential": "s3cret-Turn"},
        {"urls": ["turn:[2001:db8::1]:3478"], "username": "desk", "credential": "x"},
    ]


@pytest.mark.parametrize("server", [
    {"urls": []},                                                   # no URL
    {"urls": ["http://turn.example.com"]},                          # not an ICE scheme
    {"urls": ["stun:"]},                                            # no host
    {"urls": ["stun:stun.example.com:99999"]},                      # no such port
    {"urls": ["stun:stun.example.com:0"]},
    {"urls": ["stun:stun example.com"]},                            # a space
    {"urls": ["stun:stun.example.com\r\nX-Evil: 1"]},               # a line break
    {"urls": ["turn:turn.example.com?transport=sctp"], "username": "u", "credential": "p"},
    {"urls": ["turn:turn.example.com"]},                            # TURN without credentials
    {"urls": ["turn:turn.example.com"], "username": "u"},
    {"urls": ["turn:turn.example.com"], "username": "u", "credential": "two words"},
    {"urls": ["turn:turn.example.com"], "username": "u", "credential": "x" * 257},
    {"urls": ["stun:a.example.com"] * 5},                           # too many URLs in one entry
    {"urls": ["stun:a.example.com"], "password": "typo"},           # an unknown key
])
def test_hostile_ice_servers_are_refused(server: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings([server])


def test_at_most_eight_servers() -> None:
    settings([{"urls": ["stun:a.example.com"]}] * 8)
    with pytest.raises(ValidationError):
        settings([{"urls": ["stun:a.example.com"]}] * 9)

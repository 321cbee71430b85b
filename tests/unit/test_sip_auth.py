"""Agents' SIP credentials: HA1 hashing, generated passwords, what reaches the edge, nothing leaks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from ivr.core.config import AgentSeed, EdgeSettings, Settings
from ivr.core.sip_auth import (
    SipCredential,
    effective_credentials,
    new_sip_password,
    offer_uri,
    phone_aor,
    seed_credentials,
    sip_ha1,
)
from ivr.edge.config import EdgeConfig
from ivr.edge.control import parse_ul_dump


def test_ha1_is_md5_of_user_realm_password() -> None:
    # RFC 2617 3.2.2.2: A1 = username ":" realm ":" passwd
    assert sip_ha1("ada", "hotline", "pw") == hashlib.md5(b"ada:hotline:pw").hexdigest()
    assert sip_ha1("ada", "other", "pw") != sip_ha1("ada", "hotline", "pw"), "the realm is part of it"


def test_generated_passwords_are_long_random_and_keypad_friendly() -> None:
    passwords = {new_sip_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(len(p) == 20 and p.isalnum() for p in passwords)
    assert not any(c in p for p in passwords for c in "0O1lI")


def test_a_credential_never_shows_its_hash() -> None:
    cred = SipCredential.from_password("ada", "r", "pw")
    assert cred.ha1 not in repr(cred) and cred.ha1 not in str(cred)
    assert SipCredential.from_json("ada", cred.to_json()) == cred
    assert SipCredential.from_json("ada", "not json") is None
    assert SipCredential.from_json("ada", '{"realm": "r", "ha1": "short"}') is None


def seed(**kw: object) -> AgentSeed:
    return AgentSeed(**{"id": "ada", "name": "Ada", "token": "t", **kw})


def test_seed_phone_modes() -> None:
    edge = EdgeSettings(host="10.0.0.5", port=5070)
    assert offer_uri(seed(phone="registered"), edge) == "sip:ada@10.0.0.5:5070"
    assert offer_uri(seed(sip_uri="sip:ada@10.1.1.1"), edge) == "sip:ada@10.1.1.1"
    assert offer_uri(seed(), edge) is None
    assert phone_aor("ada", EdgeSettings(host="::1", port=5060)) == "sip:ada@[::1]:5060"
    with pytest.raises(ValidationError, match="exclude each other"):
        seed(phone="registered", sip_uri="sip:ada@10.1.1.1")
    with pytest.raises(ValidationError, match="needs phone: registered"):
        seed(sip_password="pw")


def test_file_passwords_win_and_stale_realms_are_dropped() -> None:
    users = [seed(phone="registered", sip_password="from-file"), seed(id="ben", phone="registered"),
             seed(id="sam")]
    seeded = seed_credentials(users, "r")
    stored = {"ada": SipCredential.from_password("ada", "r", "from-api"),
              "ben": SipCredential.from_password("ben", "r", "ben-api"),
              "old": SipCredential.from_password("old", "previous-realm", "x")}

    table = effective_credentials(seeded, stored, "r")

    assert table == {"ada": sip_ha1("ada", "r", "from-file"), "ben": sip_ha1("ben", "r", "ben-api")}


def test_the_realm_defaults_to_the_edge_host() -> None:
    assert EdgeSettings(host="sip.example.com").sip_realm == "sip.example.com"
    assert EdgeSettings(host="sip.example.com", registrar={"realm": "hotline"}).sip_realm == "hotline"


def test_sip_passwords_reach_children_but_never_a_dump() -> None:
    s = Settings(users=[seed(phone="registered", sip_password="from-file")])
    assert "from-file" not in repr(s) and "from-file" not in s.model_dump_json()
    assert '"sip_password": "from-file"' in s.dump_for_children()


def test_sipauth_table_holds_hashes_only(tmp_path: Path) -> None:
    cfg = EdgeConfig(Settings(var_dir=tmp_path), [("127.0.0.1", 5070)],
                     sip_credentials={"ada": sip_ha1("ada", "127.0.0.1", "pw")})
    text = cfg.render_sipauth_table()
    assert sip_ha1("ada", "127.0.0.1", "pw") in text and "pw" not in text.split("\n", 1)[1].replace("ada", "")
    cfg.sip_credentials = {"ada;x": "0" * 32}
    with pytest.raises(Exception, match="not an agent id"):
        cfg.render_sipauth_table()


def test_registrar_realm_must_be_plain(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, edge={"registrar": {"realm": 'a"b'}})
    with pytest.raises(Exception, match="realm"):
        EdgeConfig(settings, [("127.0.0.1", 5070)]).defines()


UL_DUMP = """{
\tDomains: {
\t\tDomain: {
\t\t\tDomain: location
\t\t\tAoRs: {
\t\t\t\tInfo: {
\t\t\t\t\tAoR: ada
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:ada@127.0.0.1:5555
\t\t\t\t\t\t\tExpires: 57
\t\t\t\t\t\t}
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:ada@127.0.0.1:5556
\t\t\t\t\t\t\tExpires: expired
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tInfo: {
\t\t\t\t\tAoR: ben
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tExpires: deleted
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""


def test_ul_dump_counts_live_bindings_only() -> None:
    assert parse_ul_dump(UL_DUMP) == {"ada": 1}
    assert parse_ul_dump("") == {}

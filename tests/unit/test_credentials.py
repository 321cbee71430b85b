"""Defaults that ship no known credential: generated tokens and Redis password on first start, demo
tokens refused beyond loopback."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.core.config import DEMO_USERS, Settings, is_loopback, load_settings
from ivr.core.errors import ConfigError
from ivr.runtime.credentials import apply_first_start, generated_users, read_private


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_no_user_and_no_token_by_default() -> None:
    assert Settings().users == []


def test_first_start_generates_random_tokens_for_the_demo_identities(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path / "var")
    generated = apply_first_start(s)
    assert generated is not None and generated.created
    assert [u.id for u in s.users] == [u["id"] for u in DEMO_USERS]
    tokens = [u.token.get_secret_value() for u in s.users]
    assert len(set(tokens)) == len(tokens) and all(len(t) >= 40 for t in tokens)
    assert not set(tokens) & {u["token"] for u in DEMO_USERS}
    assert mode(tmp_path / "var" / "secrets") == 0o700
    assert mode(generated.path) == 0o600
    assert mode(tmp_path / "var" / "secrets" / "redis.password") == 0o600
    assert s.redis.secret() and len(s.redis.secret() or "") >= 40


def test_a_second_start_reuses_them_and_does_not_show_them(tmp_path: Path) -> None:
    first = Settings(var_dir=tmp_path / "var")
    apply_first_start(first)
    second = Settings(var_dir=tmp_path / "var")
    generated = apply_first_start(second)
    assert generated is not None and not generated.created
    assert [u.token.get_secret_value() for u in second.users] == [u.token.get_secret_value() for u in first.users]
    assert second.redis.secret() == first.redis.secret()


def test_configured_users_and_external_redis_are_left_alone(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path / "var", users=DEMO_USERS, redis={"url": "redis://127.0.0.1:1/0"})
    assert apply_first_start(s) is None
    assert s.redis.secret() is None
    assert not (tmp_path / "var" / "secrets").exists()


def test_a_secrets_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    generated = generated_users(tmp_path)
    generated.path.chmod(0o644)
    assert read_private(generated.path)
    assert mode(generated.path) == 0o600


def test_a_broken_users_file_is_a_clear_error_without_its_content(tmp_path: Path) -> None:
    path = generated_users(tmp_path).path
    path.write_text(json.dumps([{"id": "x", "token": "leaked-secret-value"}]))
    with pytest.raises(ConfigError) as err:
        generated_users(tmp_path)
    assert "leaked-secret-value" not in str(err.value)


@given(st.sampled_from(DEMO_USERS), st.one_of(
    st.ip_addresses().filter(lambda a: not a.is_loopback).map(str),
    st.sampled_from(["0.0.0.0", "::", "hotline.example.com", "10.0.0.5", "localhost.example", ""])))
def test_demo_tokens_are_refused_beyond_loopback(user: dict[str, str], host: str) -> None:
    with pytest.raises(ValueError, match="demo token"):
        Settings(api={"host": host}, users=[user])


DEMO_TOKENS = frozenset(u["token"] for u in DEMO_USERS)


# (hypothesis also draws the code's own string constants: a demo token is short too, and refused as a
# demo token, which test_demo_tokens_are_refused_beyond_loopback covers)
@given(st.text(min_size=1, max_size=19).filter(lambda t: t.strip() == t and t not in DEMO_TOKENS))
def test_short_tokens_are_refused_beyond_loopback(token: str) -> None:
    with pytest.raises(ValueError, match="characters"):
        Settings(api={"host": "0.0.0.0"}, users=[{"id": "a", "name": "A", "token": token}])


def test_demo_tokens_serve_on_loopback_and_strong_tokens_anywhere() -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "localhost"):
        assert Settings(api={"host": host}, users=DEMO_USERS).users
    strong = [{"id": "admin", "name": "A", "role": "admin", "token": "x" * 43}]
    assert Settings(api={"host": "0.0.0.0"}, users=strong).users


def test_demo_tokens_beyond_loopback_stop_the_start(tmp_path: Path) -> None:
    cfg = tmp_path / "hotline.yaml"
    cfg.write_text("api:\n  host: 0.0.0.0\nusers:\n" + "".join(
        f"  - {{id: {u['id']}, name: x, token: {u['token']}}}\n" for u in DEMO_USERS))
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "demo token" in err.value.message


@given(st.ip_addresses())
def test_loopback_means_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert is_loopback(str(address)) == address.is_loopback


@pytest.mark.parametrize("user", [
    {"id": "a", "name": "A", "token": "short-secret-1"},  # too short beyond loopback
    {"id": "a", "name": "A", "token": "a-long-enough-secret-token-2", "skills": {"x": 9}},  # another field wrong
    {"id": "a b", "name": "A", "token": "a-long-enough-secret-token-3"},
])
def test_a_config_error_never_shows_a_token(tmp_path: Path, user: dict[str, object]) -> None:
    cfg = tmp_path / "hotline.yaml"
    cfg.write_text(json.dumps({"api": {"host": "0.0.0.0"}, "users": [user]}))
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert str(user["token"]) not in err.value.message and str(user["token"]) not in str(err.value)
    assert "user" in err.value.message

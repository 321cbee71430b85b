// The agent desktop: sign in, set my state, see the screen-pop of each call offered to me (before
// my phone rings), follow the call, and save its disposition. The login and the last call are kept
// in this tab's sessionStorage only.

import {$, ApiError, EventFeed, api, clockTime, duration, el, fill, serverNow, showError, showStatus, stateReason} from "./common.js";
import {callFacts, crmView, journeyView, statusText} from "./pop.js";
import {CallAlerts} from "./alerts.js";
import {CallHistory, MyQueues} from "./history.js";
import {CONTROL_TEXT, CallControls, applyControl, controlFromRecord} from "./callcontrol.js";
import {MyCases, TaskCard} from "./cases.js";
import {RECORDING_EVENT_TEXT, RecordingControls, RecordingList, RecordingPlayer, applyRecording} from "./recording.js";
import {BrowserPhone} from "./softphone.js";

const KEY = {agent: "ivr.desktop.agent", token: "ivr.desktop.token", call: "ivr.desktop.call", last: "ivr.desktop.last_event_id",
             alerts: "ivr.desktop.alerts"};
const BUSY = new Set(["reserved", "oncall"]);
const ACTIVITY_MAX = 50;

let login = null; // {agent, token}
let feed = null;
// since: shown "in this state for"; stamp: the server's time of the state change (0: unknown), to order
// snapshots against events; wrapupUntil: the server's deadline (ms)
let me = {state: "offline", since: null, stamp: 0, reason: "", wrapupUntil: null};
let call = null; // the current or last call offered to me
const alerts = new CallAlerts();
const history = new CallHistory(() => login);
const queues = new MyQueues(() => login);
const cases = new MyCases(() => login, (err) => showError($("error"), err));
const task = new TaskCard(() => login, (err) => showError($("error"), err));
// the browser phone's changes (registered, ringing, answered) redraw the pop's buttons and wording
const phone = new BrowserPhone({login: () => login, onChange: () => controls.render()});
const controls = new CallControls({login: () => login, call: () => call, error: (err) => showError($("error"), err),
                                   phone});
const recording = new RecordingControls({login: () => login, call: () => call, error: (err) => showError($("error"), err)});
const player = new RecordingPlayer({token: () => login && login.token, error: (err) => showError($("error"), err)});
const recordings = new RecordingList({token: () => login && login.token, player});
let formBase = {disposition: "", notes: ""}; // what the disposition form showed before the agent typed

// --- sign in / out -----------------------------------------------------------------------------------

async function signIn(agent, token) {
  const profile = await api(token, "GET", `/api/v1/agents/${encodeURIComponent(agent)}`);
  if (feed) feed.stop();
  if (sessionStorage.getItem(KEY.agent) !== agent) {  // another agent's last call and position are not mine
    sessionStorage.removeItem(KEY.call);
    sessionStorage.removeItem(KEY.last);
  }
  login = {agent, token};
  sessionStorage.setItem(KEY.agent, agent);
  sessionStorage.setItem(KEY.token, token);
  $("login").hidden = true;
  $("desk").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = profile.name ? `${profile.name} (${agent})` : agent;
  applyAgent(profile);
  if (profile.state === "reserved" && profile.task) task.restore(profile.task);  // a follow-up task offered to me
  alerts.enabled = sessionStorage.getItem(KEY.alerts) === "on"; // the sound waits for a click after a reload
  renderAlerts();
  restoreCall();
  loadDispositions();
  queues.start();
  cases.start();
  feed = new EventFeed({
    path: `/api/v1/agents/${encodeURIComponent(agent)}/events`, token, storageKey: KEY.last,
    params: {ack: "client"}, // the phone rings once the pop is on screen (we ack it below)
    onHello, onEvent, onStatus: (status, detail) => showStatus($("conn"), status, detail),
    check: () => api(token, "GET", `/api/v1/agents/${encodeURIComponent(agent)}`),
  });
  feed.open();
  phone.resume(); // this tab holds the SIP password: register again (a reload)
}

async function signOut() {
  if (login && !BUSY.has(me.state) && me.state !== "offline") {
    try {
      await api(login.token, "POST", `/api/v1/agents/${encodeURIComponent(login.agent)}/state`, {state: "offline", reason: "signed_out"});
    } catch {
      // signing out of the page still works when the server is gone
    }
  }
  if (feed) feed.stop();
  feed = null;
  await phone.stop({forget: true}); // unregisters, drops the SIP password of this tab
  login = null;
  call = null;
  alerts.disable();
  queues.stop();
  cases.stop();
  task.stop();
  history.clear();
  player.close();
  recordings.clear();
  for (const key of Object.values(KEY)) sessionStorage.removeItem(key);
  $("desk").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  $("token").value = "";
  showStatus($("conn"), "idle");
  $("conn").textContent = "Not signed in";
  fill($("activity"));
  renderCall();
  document.title = "Agent desktop";
}

// --- call alerts ---------------------------------------------------------------------------------------

const ALERT_TEXT = {
  on: "Sound and notifications on",
  blocked: "Sound on; notifications are blocked in this browser's site settings",
  asleep: "Click anywhere in the page to wake the sound",
  off: "",
};

function renderAlerts() {
  const status = alerts.status();
  const button = $("alerts-toggle");
  button.setAttribute("aria-pressed", String(alerts.enabled));
  button.textContent = alerts.enabled ? "Turn off call alerts" : "Turn on call alerts";
  button.dataset.status = status;
  $("alerts-status").textContent = ALERT_TEXT[status] || "";
}

async function toggleAlerts() {
  if (alerts.enabled) {
    alerts.disable();
    sessionStorage.removeItem(KEY.alerts);
  } else {
    sessionStorage.setItem(KEY.alerts, "on");
    await alerts.enable(); // in the click: the browser lets the page ask and play
  }
  renderAlerts();
}

// --- my state ----------------------------------------------------------------------------------------

/** The agent as a REST reply or the hello has it. A reply can arrive after newer events of the
 * feed (the state changed again meanwhile: a POST /state reply read after the call's agent.state
 * events): a snapshot older than the state shown is ignored, so the page never steps back. */
function applyAgent(agent) {
  const since = Number(agent.state_since) || 0;
  if (since && me.stamp && since < me.stamp) return;
  me = {state: agent.state || "offline", since: since || serverNow(), stamp: since, reason: agent.reason || "",
        wrapupUntil: Number(agent.wrapup_until) || null};
  renderState();
  if (agent.phone) renderPhone(agent.phone);  // the state endpoints answer without it
}

// A phone that registers at the edge (phone mode "registered"): calls are offered only while it is
// registered (agent.phone events keep this live). A fixed SIP URI has nothing to show.
let phoneMode = "";
function renderPhone({mode = phoneMode, registered = false, contacts = 0} = {}) {
  phoneMode = mode || "";
  $("phone-line").hidden = phoneMode !== "registered";
  const pill = $("phone-state");
  pill.dataset.registered = String(Boolean(registered));
  pill.textContent = registered ? (contacts > 1 ? `registered (${contacts} devices)` : "registered") : "not registered";
  $("phone-hint").textContent = registered ? "" : "No calls will be offered until your phone registers.";
}

const HINT = {
  reserved: "A call is ringing: pick up your phone to answer it.",
  reservedBrowser: "A call is ringing: answer it on your browser phone.",
  oncall: "On a call: your state changes when it ends.",
};

function renderState() {
  const pill = $("state");
  pill.textContent = me.state;
  pill.dataset.state = me.state;
  $("reason").textContent = stateReason(me.state, me.reason);
  for (const id of ["go-available", "go-break", "go-offline"]) {
    const button = $(id);
    button.setAttribute("aria-pressed", String(button.dataset.state === me.state));
    button.disabled = BUSY.has(me.state);
  }
  const missed = me.state === "break" && /^(rejected|ring_no_answer|unreachable|agent_rejected)/.test(me.reason);
  $("state-hint").textContent = missed ? "A call you did not take went back to its queue: choose Available when you are ready."
    : me.state === "reserved" && me.reason === "task" ? "A follow-up task is offered to you: Dial or Skip it."
    : me.state === "reserved" && phone.registered ? HINT.reservedBrowser
    : HINT[me.state] || (me.state === "wrapup"
    ? (me.wrapupUntil ? "Wrap-up: you become available for the next call when the time is up."
                      : "Wrap-up: choose Ready now when you are ready for the next call.")
    : "");
  const clock = $("wrapup-clock");
  clock.hidden = me.state !== "wrapup";
  clock.dataset.until = me.wrapupUntil ? String(me.wrapupUntil) : "";
  $("wrapup-left").parentElement.hidden = !me.wrapupUntil;
  tick();
  setTitle();
}

/** More wrap-up time: the server moves the deadline; every tab hears agent.wrapup_extended. */
async function extendWrapup() {
  showError($("error"), null);
  const button = $("wrapup-extend");
  button.disabled = true;
  try {
    applyAgent(await api(login.token, "POST", `/api/v1/agents/${encodeURIComponent(login.agent)}/wrapup`,
                         {extend_s: Number(button.dataset.extendS)}));
  } catch (err) {
    showError($("error"), err);
  } finally {
    button.disabled = false;
  }
}

async function setState(state) {
  showError($("error"), null);
  const reason = state === "break" ? $("break-reason").value : "";
  try {
    applyAgent(await api(login.token, "POST", `/api/v1/agents/${encodeURIComponent(login.agent)}/state`, {state, reason}));
  } catch (err) {
    showError($("error"), err);
  }
}

// --- the call ---------------------------------------------------------------------------------------------

function saveCall() {
  if (call) sessionStorage.setItem(KEY.call, JSON.stringify(call));
}

function restoreCall() {
  try {
    call = JSON.parse(sessionStorage.getItem(KEY.call) || "null");
  } catch {
    call = null;
  }
  renderCall({fill: true});
}

/** The call record (the hello of a reconnect, after a reload) as the desktop's call. */
function fromRecord(rec) {
  const status = {offered: "ringing", connected: "connected", held: "connected", consulting: "connected",
                  conferenced: "connected", transferring: "connected", ended: "ended"}[rec.state];
  const queued = Number(rec.queued_at), offered = Number(rec.offered_at);
  // the wait measured when the agent answered (the record's waited_s, or waited_ms in the raw hash):
  // the figure of call.answered, the queue statistics and the report; before the answer, the wait so far
  const answeredWait = rec.waited_s !== undefined ? Number(rec.waited_s)
    : rec.waited_ms !== undefined ? Number(rec.waited_ms) / 1000 : undefined;
  return {
    call_id: rec.call_id, offer_id: rec.offer_id, ani: rec.ani, dnis: rec.dnis, hotline: rec.hotline,
    language: rec.language, queue: rec.queue, priority: rec.priority, journey: rec.journey, crm: rec.crm,
    waited_s: answeredWait ?? (queued && offered ? (offered - queued) / 1000 : undefined), status: status || rec.state,
    offered_at: offered || undefined, answered_at: Number(rec.answered_at) || undefined,
    ended_at: Number(rec.ended_at) || undefined, outcome: rec.outcome, disposition: rec.disposition, notes: rec.notes,
    transferred_from: rec.transferred_from, case_id: rec.case_id, recording: rec.recording || "",
    ...controlFromRecord(rec),
  };
}

function onCallEvent(ev) {
  if (ev.type === "call.offered") {
    call = {...ev, status: "ringing", offered_at: ev.ts, held: false, muted: false, consult: null, conference: null};
    delete call.type;
    delete call.id;
    renderCall({fill: true, announce: true});
    $("pop").dataset.alerted = call.direction === "outbound" ? "" : alerts.pop(call).join(" ");
    saveCall();
    // ack once the card is painted (after the next frame): then the server lets the phone ring
    const offer = ev.offer_id;
    const painted = call.call_id, who = call.ani;
    requestAnimationFrame(() => setTimeout(() => {
      if (feed) feed.send({type: "ack", offer_id: offer});
      phone.popPainted(painted, who); // the browser phone may ring now
    }, 0));
    return;
  }
  if (ev.type === "call.consult_offered") {  // a colleague consults me: my phone rings for the consult
    call = {call_id: ev.call_id, ani: ev.ani, queue: ev.queue, journey: ev.journey, crm: ev.crm, status: "ringing",
            offered_at: ev.ts, consult_from: ev.from_agent};
    renderCall({fill: true, announce: true});
    const painted = call.call_id, who = `${ev.from_agent} (consult)`;
    requestAnimationFrame(() => setTimeout(() => phone.popPainted(painted, who), 0));
    $("pop").dataset.alerted = alerts.pop(call).join(" ");
    saveCall();
    return;
  }
  if (!call || call.call_id !== ev.call_id) return;
  if (applyControl(call, ev, login.agent)) {
    if (call.status !== "connected") alerts.clear(call.call_id);
    renderCall();
    saveCall();
    return;
  }
  if (ev.type === "call.answered" || ev.type === "call.offer_failed" || ev.type === "call.ended") alerts.clear(ev.call_id);
  if (ev.type === "call.offer_failed") {
    if (ev.offer_id && ev.offer_id !== call.offer_id) return;
    Object.assign(call, {status: "missed", reason: ev.reason, ended_at: ev.ts});
  } else if (ev.type === "call.dialing") {  // click-to-dial: I answered my phone, the customer's rings now
    Object.assign(call, {status: "dialing", note: ""});
  } else if (ev.type === "call.answered") {
    // the wait up to the answer (ringing included): what the wallboard and the report show for this call
    Object.assign(call, {status: "connected", answered_at: ev.ts, waited_s: ev.waited_s ?? call.waited_s,
                         note: ""});
    fill($("pop-facts"), callFacts(call));
  } else if (ev.type === "call.ended") {
    if (call.status === "missed") return;
    Object.assign(call, {status: "ended", ended_at: ev.ts, outcome: ev.outcome, reason: ev.reason});
  } else if (ev.type === "call.disposition") {
    Object.assign(call, {disposition: ev.disposition, notes: ev.notes});
    followDisposition();
  }
  renderCall();
  saveCall();
  if (ev.type === "call.ended" || ev.type === "call.disposition") {
    if (history.unfiltered()) history.search();
  }
  if (ev.type === "call.ended" && call.recording && $("recordings-card").open) recordings.expect(call.call_id);
  if (ev.type === "call.answered" || ev.type === "call.offer_failed") queues.refresh(true);
}

/** Show the call: ``fill`` draws the card's contents and resets the form (a new call),
 * ``announce`` also highlights it (a pop); otherwise only the status changes. */
function renderCall({fill: fillCard = false, announce = false} = {}) {
  const card = $("pop");
  $("no-call").hidden = Boolean(call);
  card.hidden = !call;
  if (!call) {
    phone.currentPop = null;
    renderWrapup(true);
    controls.render();
    recording.render(false);
    return;
  }
  card.dataset.callId = call.call_id;
  card.dataset.status = call.status;
  if (call.status !== "ringing") phone.currentPop = null; // popPainted set it
  const outbound = call.direction === "outbound"; // click-to-dial: my phone rings first, then the customer's
  $("pop-title").textContent = call.status === "ringing"
    ? (outbound ? `Calling ${call.ani || "unknown"}` : `Incoming call from ${call.ani || "unknown"}`)
    : `Call with ${call.ani || "unknown"}`;
  const pill = $("call-status");
  const sub = call.status !== "connected" ? call.status : call.consult ? "consulting" : call.conference ? "conferenced"
    : call.held ? "held" : "connected";
  pill.textContent = sub === "connected" || sub === call.status ? statusText(call) : SUB_STATUS[sub];
  pill.dataset.state = sub;
  card.dataset.control = sub;
  if (call.consult_from) card.dataset.consultFrom = call.consult_from;
  else delete card.dataset.consultFrom;
  if (fillCard) {
    fill($("pop-facts"), callFacts(call));
    fill($("pop-crm"), crmView(call.crm));
    fill($("pop-journey"), journeyView(call.journey));
  }
  if (announce) {
    // when the pop was put on screen (ms, wall clock), for tests to compare with the phone's ringing
    card.dataset.shownAt = String(Date.now());
    card.classList.remove("flash");
    void card.offsetWidth; // restart the highlight
    card.classList.add("flash");
  }
  renderWrapup(fillCard);
  controls.render();
  recording.render(call.status === "connected" && !call.consult_from);
  tick();
  setTitle();
}

const SUB_STATUS = {held: "On hold", consulting: "Consulting", conferenced: "Conference"};

/** The disposition form is for the current or last call once it was answered. */
function renderWrapup(reset) {
  const answered = Boolean(call) && (call.status === "connected" || Boolean(call.answered_at));
  const usable = answered || Boolean(call && call.disposition);
  for (const id of ["disposition", "notes", "disposition-save", "case-tier", "case-reason-input"]) $(id).disabled = !usable;
  if (reset) {
    setDispositionForm(call && call.disposition ? call.disposition : "", call && call.notes ? call.notes : "");
    $("case-tier").value = "";
    $("case-reason-input").value = "";
    $("disposition-result").textContent = "";
  }
  $("wrapup-call").textContent = !call ? "No call to dispose of yet."
    : usable ? `For the call with ${call.ani || "unknown"} (${call.call_id})`
    : call.status === "ringing" ? "Available once the call is answered." : "This call was not answered.";
  if (call && call.disposition) {
    $("disposition-result").textContent = `Saved: ${call.disposition}${call.case_id ? ` · case ${call.case_id}` : ""}`;
    $("disposition-result").dataset.saved = call.disposition;
  } else {
    delete $("disposition-result").dataset.saved;
  }
}

function setDispositionForm(disposition, notes) {
  $("disposition").value = disposition;
  $("notes").value = notes;
  formBase = {disposition: $("disposition").value, notes};
}

/** A disposition saved (here, or in another tab of mine): the form shows it, unless the agent is
 * typing a different one here (then it says so, and keeps the typing). */
function followDisposition() {
  const edited = $("disposition").value !== formBase.disposition || $("notes").value !== formBase.notes;
  const same = $("disposition").value === call.disposition && $("notes").value === (call.notes || "");
  if (!edited || same) {
    setDispositionForm(call.disposition || "", call.notes || "");
    $("disposition-form").dataset.conflict = "";
  } else {
    $("disposition-form").dataset.conflict = "1";
    showError($("error"), new Error(`Another tab saved "${call.disposition}" for this call: saving here replaces it.`));
  }
}

async function loadDispositions() {
  try {
    const {dispositions} = await api(login.token, "GET", "/api/v1/dispositions");
    const select = $("disposition");
    fill(select, el("option", {value: ""}, "choose…"), dispositions.map((code) => el("option", {value: code}, code.replace(/_/g, " "))));
    if (call && call.disposition) setDispositionForm(call.disposition, $("notes").value);
  } catch (err) {
    showError($("error"), err);
  }
}

async function saveDisposition(event) {
  event.preventDefault();
  if (!call) return;
  showError($("error"), null);
  const button = $("disposition-save");
  button.disabled = true;
  $("disposition-result").textContent = "Saving…";
  try {
    const body = {disposition: $("disposition").value, notes: $("notes").value};
    // a complaint tier opens a case for the call (once: the call keeps its case)
    if ($("case-tier").value) body.case = {tier: $("case-tier").value, reason: $("case-reason-input").value.trim() || $("disposition").value};
    const rec = await api(login.token, "POST", `/api/v1/calls/${encodeURIComponent(call.call_id)}/disposition`, body);
    Object.assign(call, {disposition: rec.disposition, notes: rec.notes, case_id: rec.case_id || call.case_id});
    saveCall();
    followDisposition();
    renderWrapup(false);
  } catch (err) {
    $("disposition-result").textContent = "";
    showError($("error"), err);
  } finally {
    button.disabled = false;
  }
}

// --- the feed ---------------------------------------------------------------------------------------------

function onHello(hello) {
  if (hello.agent) applyAgent(hello.agent);
  if (hello.call && hello.call.agent_id === login.agent) {
    if (!call || call.call_id !== hello.call.call_id) {
      call = fromRecord(hello.call);
      renderCall({fill: true, announce: call.status === "ringing"});
      if (call.status === "ringing") {  // a reload while it rings: the browser phone may ring once painted
        const painted = call.call_id, who = call.ani;
        requestAnimationFrame(() => setTimeout(() => phone.popPainted(painted, who), 0));
      }
    } else {
      const rec = fromRecord(hello.call);
      for (const key of ["status", "answered_at", "ended_at", "outcome", "disposition", "notes", "held", "muted",
                         "consult", "conference", "recording"]) {
        if (rec[key] !== undefined && (key !== "status" || call.status !== "missed")) call[key] = rec[key];
      }
      if (rec.disposition !== undefined) followDisposition();
      renderCall();
    }
    saveCall();
  }
}

const DESCRIBE = {
  "call.offered": (ev) => `Call offered: ${ev.ani || "unknown"} · ${ev.queue || ""}`,
  "call.offer_failed": (ev) => `Offer missed (${(ev.reason || "").replace(/_/g, " ")})`,
  "call.answered": () => "Call answered",
  "call.dialing": () => "Dialling the customer",
  "call.ended": (ev) => `Call ended (${ev.outcome || ev.reason || ""})`,
  "call.disposition": (ev) => `Disposition saved: ${ev.disposition}`,
  "agent.state": (ev) => `State ${ev.state}${stateReason(ev.state, ev.reason) ? ` · ${stateReason(ev.state, ev.reason)}` : ""}`,
  "agent.wrapup_extended": (ev) => `Wrap-up extended by ${duration(Number(ev.extended_s))}`,
  "case.opened": (ev) => `Case ${ev.case_id} opened (${ev.tier})`,
  "case.status": (ev) => `Case ${ev.case_id} ${ev.status}`,
  "case.updated": (ev) => `Case ${ev.case_id} changed (${(ev.changed || []).join(", ")})`,
  "case.overdue": (ev) => `Case ${ev.case_id} is overdue`,
  "case.task_offered": (ev) => `Follow-up offered: case ${ev.case_id} (${ev.tier})`,
  "case.task_accepted": (ev) => `Follow-up dialled: case ${ev.case_id}`,
  "case.task_declined": (ev) => `Follow-up ${ev.reason === "timeout" ? "expired" : "skipped"}: case ${ev.case_id}`,
  "case.followup_scheduled": (ev) => `Follow-up call (回访) of case ${ev.case_id} scheduled (${ev.mode})`,
  "case.followup_done": (ev) => `Follow-up of case ${ev.case_id} done${ev.reopened ? ": not solved, reopened" : ""}`,
  "case.followup_failed": (ev) => `Follow-up of case ${ev.case_id} gave up (${(ev.reason || "").replace(/_/g, " ")})`,
  "case.answers": (ev) => `Case ${ev.case_id}: the customer answered${ev.reopened ? " (reopened)" : ""}`,
  "agent.deleted": () => "Agent profile deleted",
  "agent.phone": (ev) => (ev.registered ? "Phone registered" : ev.reason === "stale" ? "Phone status unknown (edge not answering)"
    : "Phone unregistered"),
  ...CONTROL_TEXT,
  ...RECORDING_EVENT_TEXT,
  "replay.gap": () => "Some events were too old to replay: state refreshed",
};

function addActivity(ev) {
  const describe = DESCRIBE[ev.type];
  const text = describe ? describe(ev) : null;
  if (!text) return;
  const list = $("activity");
  const when = Number(ev.ts) || serverNow();
  list.prepend(el("li", {dataset: {eventId: ev.id || "", type: ev.type}},
                  el("time", {}, clockTime(when)), " ", text));
  while (list.children.length > ACTIVITY_MAX) list.lastElementChild.remove();
}

async function onEvent(ev) {
  addActivity(ev);
  if (ev.type.startsWith("call.")) {
    onCallEvent(ev);
  } else if (ev.type.startsWith("recording.")) {
    if (call && call.call_id === ev.call_id && applyRecording(call, ev)) {
      renderCall();
      saveCall();
    }
  } else if (ev.type.startsWith("case.")) {
    cases.onEvent(ev);
    task.onEvent(ev);
  } else if (ev.type === "agent.state") {
    // a consult of mine that ends without reaching me as an event (cancelled, failed): my state says so
    if (call && call.consult_from && (call.status === "ringing" || call.status === "connected")
        && !BUSY.has(ev.state)) {
      Object.assign(call, {status: "ended", ended_at: Number(ev.ts) || serverNow(), conference: null});
      alerts.clear(call.call_id);
      renderCall();
      saveCall();
    }
    me = {state: ev.state, since: Number(ev.ts) || serverNow(), stamp: Number(ev.ts) || 0, reason: ev.reason || "",
          wrapupUntil: ev.state === "wrapup" ? Number(ev.wrapup_until) || null : null};
    renderState();
  } else if (ev.type === "agent.phone") {
    renderPhone({registered: Boolean(ev.registered), contacts: Number(ev.contacts) || 0});
  } else if (ev.type === "agent.wrapup_extended") {
    if (me.state === "wrapup") {
      me.wrapupUntil = Number(ev.wrapup_until) || me.wrapupUntil;
      renderState();
    }
  } else if (ev.type === "agent.deleted") {
    feed.stop();
    showError($("error"), new ApiError(404, "agent.not_found", "your agent profile was deleted"));
  } else if (ev.type === "replay.gap") {
    try {
      applyAgent(await api(login.token, "GET", `/api/v1/agents/${encodeURIComponent(login.agent)}`));
    } catch (err) {
      showError($("error"), err);
    }
  }
}

// --- clocks -------------------------------------------------------------------------------------------------

function tick() {
  queues.render();
  cases.tick();
  task.tick();
  $("since").textContent = me.since ? duration((serverNow() - me.since) / 1000) : "";
  if (me.state === "wrapup" && me.wrapupUntil) {
    const left = (me.wrapupUntil - serverNow()) / 1000;
    // ceil: "0:01" until the last second is over; at 0 the server makes the agent available
    $("wrapup-left").textContent = left > 0 ? duration(Math.ceil(left)) : "0:00";
  }
  if (!call) return;
  const now = serverNow();
  const span = call.status === "ringing" ? now - (call.offered_at || now)
    : call.status === "connected" ? now - (call.answered_at || now)
    : call.answered_at && call.ended_at ? call.ended_at - call.answered_at : null;
  $("call-timer").textContent = span === null ? "" : duration(span / 1000);
}

function setTitle() {
  document.title = call && call.status === "ringing" ? `☎ Call from ${call.ani || "unknown"}`
    : login ? `${me.state} · Agent desktop` : "Agent desktop";
}

// --- start --------------------------------------------------------------------------------------------------

function start() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError($("error"), null);
    try {
      await signIn($("agent").value.trim(), $("token").value);
    } catch (err) {
      showError($("error"), err);
    }
  });
  $("signout").addEventListener("click", signOut);
  for (const id of ["go-available", "go-break", "go-offline"]) {
    $(id).addEventListener("click", () => setState($(id).dataset.state));
  }
  $("disposition-form").addEventListener("submit", saveDisposition);
  $("wrapup-extend").addEventListener("click", extendWrapup);
  $("alerts-toggle").addEventListener("click", toggleAlerts);
  $("recordings-card").addEventListener("toggle", () => {
    if (!$("recordings-card").open) return;
    recordings.load();
    // my last call was recorded: its recording is listed once the worker has stored it
    if (call && call.recording && call.status !== "connected" && call.status !== "ringing") recordings.expect(call.call_id);
  });
  alerts.onChange = renderAlerts;
  $("wrapup-ready").addEventListener("click", () => setState("available"));
  phone.bind();
  setInterval(tick, 1000);
  const agent = sessionStorage.getItem(KEY.agent), token = sessionStorage.getItem(KEY.token);
  if (agent && token) {
    $("agent").value = agent;
    signIn(agent, token).catch((err) => {
      showError($("error"), err);
      if (err instanceof ApiError && err.status === 401) sessionStorage.removeItem(KEY.token);
    });
  }
}

start();

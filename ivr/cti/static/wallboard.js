// The supervisors' wallboard: one tile per queue (waiting callers, longest wait, service level
// against its target, ASA, abandons), the agents with their states, and a chart of the states.
// Agents change live from the floor's event feed; queue figures are fetched every few seconds and
// at once after a queue event. The "Complaints" tile (open cases per tier, overdue, due soon, first
// contact met today) reads GET /api/v1/cases/counts every 30 s and after each case event; with cases
// overdue, an alert says so and the "Overdue complaints" list (the supervisors' queue, oldest due
// first) lets a supervisor assign each to an agent (PATCH owner). An agent on a call has Listen /
// Whisper / Barge / Stop buttons (live supervision: the worker dials "Your phone" of the settings,
// a number or an agent id; POST, then PATCH the mode, DELETE to stop). A call with a recording (its
// record's ``recording_id``, or recording.saved while the agent still holds it) has a Play button, and
// "Recent recordings" lists the newest 20 (recording.js plays them). The token is kept in this
// tab's sessionStorage only.
// Issue 21 (a supervisor's workplace): each queue's service-level threshold and target and its alert
// thresholds (longest wait, callers waiting, abandon rate) are the server's (``target`` and
// ``thresholds`` of GET /api/v1/queues; the defaults of the settings while a server sends none), not
// this browser's; the tiles count agents by state so that they add up to those signed in; states have
// readable names; "Agent figures today" (GET /api/v1/agents/stats, by interval on demand), "Today by
// interval" (GET /api/v1/queues/{queue}/intervals: SL and offered / answered / abandoned) and their CSV
// exports; a row's Break / Sign out / Available buttons force the agent's state (POST .../force;
// on a call: after the call and its wrap-up).

import {$, ApiError, EventFeed, api, duration, el, fill, serverNow, showError, showStatus, stateReason} from "./common.js";
import {drawIntervalChart, drawStateChart} from "./chart.js";
import {floorControl} from "./callcontrol.js";
import {RecordingList, RecordingPlayer} from "./recording.js";
import {AlertBanner} from "./floor_alerts.js";
import {ForecastCard} from "./forecast.js";

const TOKEN_KEY = "ivr.wallboard.token";
const SETTINGS_KEY = "ivr.wallboard.settings"; // the supervisor's phone only (localStorage: nothing secret)
const STATES = ["available", "reserved", "oncall", "wrapup", "break", "offline"];
const STATE_NAMES = {available: "Available", reserved: "Ringing", oncall: "On a call", wrapup: "Wrap-up",
                            break: "On break", offline: "Signed out"};
const SIGNED_IN = ["available", "reserved", "oncall", "wrapup", "break"];
const BUSY = new Set(["reserved", "oncall"]);
// while a server sends no target / thresholds: the settings' defaults (routing.service_level_target, the
// smallest threshold; the long_wait rule)
const DEFAULT_TARGET = 0.9;
const DEFAULT_WAIT_ALERT_S = 60;
const STATS_EVERY_MS = 30000;
const STATS_MIN_GAP_MS = 10000;
const HISTORY_EVERY_MS = 60000;
const ON_CALL = new Set(["reserved", "oncall", "wrapup"]);
const QUEUE_EVENTS = new Set(["call.queued", "call.offered", "call.offer_failed", "call.answered", "call.abandoned",
                              "call.ended"]);
const CONTROL_TEXT = {held: "on hold", consulting: "consulting", conference: "conference"};
const RECORD_CONTROL = {held: "held", consulting: "consulting", conferenced: "conference"};
const QUEUES_EVERY_MS = 5000;
const AGENTS_EVERY_MS = 30000;
const CASES_EVERY_MS = 30000;
const CAMPAIGNS_EVERY_MS = 30000;
const TIERS = ["urgent", "important", "normal"];

let token = null;
let feed = null;
let timers = [];
let agents = new Map(); // agent_id -> {agent_id, name, state, since, reason, call_id, control, muted}
const calls = new Map(); // call_id -> {ani, queue}, from the pops, while an agent holds the call
let queues = [];
let queuesAt = 0; // when the figures were fetched (this browser's clock)
let queueRefresh = null;
let caseRefresh = null;
let campaigns = new Map(); // the Campaigns tile: running and paused campaigns by id (live from campaign.progress)
let campaignRefresh = null;
let caseAlerts = []; // the complaints' alerts, shown with the queues'
let overdueCases = []; // GET /api/v1/cases?due=overdue, oldest due first
const OVERDUE_SHOWN = 50;
const player = new RecordingPlayer({token: () => token, error: (err) => showError($("error"), err)});
const recent = new RecordingList({token: () => token, player, limit: 20, paging: false, agent: true});
let recentRefresh = null;
// Issue 21's parts, each in its own module: the server's alerts (banner, sound, history) and the
// forecast vs actual chart with the staffing need. Each: start() after sign-in, stop() at sign-out,
// onEvent(ev) for every floor event.
const parts = [new AlertBanner({token: () => token, error: (err) => showError($("error"), err)}),
               new ForecastCard({token: () => token, error: (err) => showError($("error"), err)})];
let settings = {phone: ""};
let agentStats = new Map(); // agent_id -> GET /api/v1/agents/stats entry (today, by day)
let statsRefresh = null;
let historyQueue = ""; // the queue of "Today by interval"
let intervalAgent = ""; // the agent whose figures by interval are open
const MONITOR_MODES = ["listen", "whisper", "barge"];
const MONITOR_TEXT = {listen: "listened to", whisper: "coached", barge: "barged into"};
const PHONE_NUMBER = /^\+?[0-9*#]{1,32}$/;

// --- sign in / out -----------------------------------------------------------------------------------------

async function signIn(tok) {
  const data = await api(tok, "GET", "/api/v1/queues");
  token = tok;
  sessionStorage.setItem(TOKEN_KEY, tok);
  $("login").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  setQueues(data.queues);
  await refreshAgents();
  recent.load();
  if (feed) feed.stop();
  feed = new EventFeed({
    path: "/api/v1/events", token, resume: false, onHello, onEvent,
    onStatus: (status, detail) => showStatus($("conn"), status, detail),
    check: () => api(token, "GET", "/api/v1/queues"),
  });
  feed.open();
  timers.forEach(clearInterval);
  refreshCases();
  refreshCampaigns();
  for (const part of parts) part.start();
  refreshAgentStats();
  refreshHistory();
  timers = [setInterval(refreshQueues, QUEUES_EVERY_MS), setInterval(refreshAgents, AGENTS_EVERY_MS),
            setInterval(refreshCases, CASES_EVERY_MS), setInterval(refreshCampaigns, CAMPAIGNS_EVERY_MS),
            setInterval(refreshAgentStats, STATS_EVERY_MS), setInterval(refreshHistory, HISTORY_EVERY_MS),
            setInterval(tick, 1000)];
}

function signOut() {
  for (const part of parts) part.stop();
  if (feed) feed.stop();
  feed = null;
  timers.forEach(clearInterval);
  timers = [];
  token = null;
  player.close();
  recent.clear();
  sessionStorage.removeItem(TOKEN_KEY);
  agents = new Map();
  agentStats = new Map();
  intervalAgent = "";
  $("agent-intervals").hidden = true;
  $("board").hidden = true;
  $("complaints").hidden = true;
  $("campaigns").hidden = true;
  campaigns = new Map();
  $("overdue").hidden = true;
  caseAlerts = [];
  overdueCases = [];
  $("signout").hidden = true;
  $("login").hidden = false;
  $("conn").dataset.status = "idle";
  $("conn").textContent = "Not signed in";
}

// --- queues ----------------------------------------------------------------------------------------------------

async function refreshQueues() {
  if (!token) return;
  try {
    setQueues((await api(token, "GET", "/api/v1/queues")).queues);
    showError($("error"), null);
  } catch (err) {
    showError($("error"), err);
  }
}

function scheduleQueues() {
  if (queueRefresh) return;
  queueRefresh = setTimeout(() => {
    queueRefresh = null;
    refreshQueues();
  }, 250);
}

function setQueues(list) {
  queues = list;
  queuesAt = Date.now();
  renderQueues();
  fillHistoryQueues();
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

/** The queue's service-level target, the server's: {share, threshold (seconds, as a string)}. Without one
 * from the server: the settings' defaults (0.9 within the smallest threshold counted). */
function queueTarget(q) {
  const counted = Object.keys(((q.stats || {}).period || {}).service_level || {}).sort((a, b) => Number(a) - Number(b));
  const t = q.target && typeof q.target === "object" ? q.target : {};
  const share = Number(t.share) > 0 && Number(t.share) <= 1 ? Number(t.share) : DEFAULT_TARGET;
  let threshold = Number(t.threshold_s) > 0 ? String(t.threshold_s) : counted[0] || null;
  // a threshold the statistics do not count cannot be shown: the largest counted below it, else the smallest
  if (threshold && counted.length && !counted.includes(threshold)) {
    threshold = counted.filter((c) => Number(c) <= Number(threshold)).pop() || counted[0];
  }
  return {share, threshold};
}

/** The queue's alert thresholds, the server's (the alert rules in force for it); null: no such alert. */
function queueThresholds(q) {
  const t = q.thresholds && typeof q.thresholds === "object" ? q.thresholds : {};
  const num = (v) => (v === null || v === undefined || Number.isNaN(Number(v)) ? null : Number(v));
  return {longestWait: q.thresholds ? num(t.longest_wait_s) : DEFAULT_WAIT_ALERT_S, waiting: num(t.waiting),
          abandonRate: num(t.abandon_rate)};
}

/** Traffic light for a service level against its target share: green at or above, amber within 10 points. */
function slLevel(sl, share) {
  if (sl === null || sl === undefined) return "none";
  return sl >= share ? "green" : sl >= share - 0.1 ? "amber" : "red";
}

function waitLevel(seconds, limit) {
  if (limit === null) return "green";
  return seconds > limit ? "red" : seconds > limit / 2 ? "amber" : "green";
}

function figure(label, value, attrs = {}) {
  return el("div", {class: attrs.big ? "figure big" : "figure", dataset: {figure: attrs.key, level: attrs.level}},
            el("span", {class: "value"}, value), el("span", {class: "label"}, label));
}

function longestWait(q) {
  return q.stats.waiting > 0 ? q.stats.longest_wait_s + (Date.now() - queuesAt) / 1000 : 0;
}

function pct(x) {
  return x === null || x === undefined ? "—" : `${Math.round(x * 100)}%`;
}

function renderQueues() {
  const alerts = [];
  const tiles = queues.map((q) => {
    const period = q.stats.period;
    const target = queueTarget(q), limits = queueThresholds(q);
    const sl = (period.service_level || {})[target.threshold];
    const slValue = sl ? sl.sl2 : null;
    const level = slLevel(slValue, target.share);
    const wait = longestWait(q);
    const wLevel = q.stats.waiting > 0 ? waitLevel(wait, limits.longestWait) : "green";
    const nLevel = limits.waiting !== null && q.stats.waiting >= limits.waiting ? "red" : wLevel;
    const aLevel = limits.abandonRate !== null && period.abandon_rate !== null && period.abandon_rate > limits.abandonRate
      ? "red" : undefined;
    const alert = level === "red" || wLevel === "red" || nLevel === "red" || aLevel === "red";
    const goal = `${Math.round(target.share * 100)}%`;
    if (level === "red") alerts.push(`${q.queue}: service level ${pct(slValue)} below ${goal}`);
    if (wLevel === "red") alerts.push(`${q.queue}: a caller has waited ${duration(wait)}`);
    if (nLevel === "red" && wLevel !== "red") alerts.push(`${q.queue}: ${q.stats.waiting} callers waiting`);
    if (aLevel === "red") alerts.push(`${q.queue}: ${pct(period.abandon_rate)} abandoned`);
    return el("section", {class: alert ? "tile alert" : "tile", dataset: {queue: q.queue, sl: level}},
      el("h2", {}, q.queue, el("span", {class: "muted small"}, q.skill ? `skill ${q.skill}` : "")),
      el("div", {class: "figures"},
        figure("waiting", String(q.stats.waiting), {big: true, key: "waiting", level: q.stats.waiting ? nLevel : undefined}),
        figure("longest wait", duration(wait), {key: "longest-wait", level: q.stats.waiting ? wLevel : undefined}),
        figure(`SL ${target.threshold || "?"} s · target ${goal}`, pct(slValue),
               {key: "service-level", level: level === "none" ? undefined : level}),
        figure("ASA", period.asa_s === null ? "—" : duration(period.asa_s), {key: "asa"}),
        figure(period.abandon_rate === null ? "abandoned" : `abandoned · ${pct(period.abandon_rate)}`, String(period.abandoned),
               {key: "abandoned", level: aLevel}),
        figure("answered", `${period.answered} / ${period.offered}`, {key: "answered"})),
      staffLine(q.stats.agents || {}));
  });
  fill($("tiles"), tiles.length ? tiles : el("p", {class: "muted"}, "No queues configured yet."));
  alerts.push(...caseAlerts);
  $("alerts").hidden = !alerts.length;
  $("alerts").textContent = alerts.join(" · ");
}

/** The queue's agents by state: each counted once, in the state it is in; signed in = their sum. */
function staffLine(staff) {
  const signedIn = SIGNED_IN.reduce((sum, s) => sum + (Number(staff[s]) || 0), 0);
  const part = (state) => el("span", {class: "staff", dataset: {staff: state, count: String(Number(staff[state]) || 0)}},
                             el("b", {}, String(Number(staff[state]) || 0)), ` ${STATE_NAMES[state]}`);
  return el("p", {class: "staffing"},
            ...SIGNED_IN.flatMap((s, i) => (i ? [" · ", part(s)] : [part(s)])),
            " = ", el("span", {class: "staff", dataset: {staff: "signed-in", count: String(signedIn)}},
                      el("b", {}, String(signedIn)), " signed in"));
}

// --- complaints ---------------------------------------------------------------------------------------------

async function refreshCases() {
  if (!token) return;
  try {
    const counts = await api(token, "GET", "/api/v1/cases/counts");
    overdueCases = counts.overdue > 0
      ? (await api(token, "GET", `/api/v1/cases?due=overdue&limit=${OVERDUE_SHOWN}`)).cases
          .sort((a, b) => a.due_at - b.due_at || a.id.localeCompare(b.id))
      : [];
    renderCases(counts);
    renderOverdue();
  } catch {
    // the next refresh tries again (the queues' refresh reports a server that is gone)
  }
}

/** The supervisors' queue: every overdue case with its owner, its follow-up task, and a way to assign it. */
function renderOverdue() {
  const section = $("overdue");
  section.hidden = !overdueCases.length;
  const names = [...agents.values()].sort((a, b) => a.agent_id.localeCompare(b.agent_id));
  fill($("overdue-rows"), overdueCases.map((c) => {
    const select = el("select", {"aria-label": `agent for case ${c.id}`},
      el("option", {value: ""}, "choose an agent"),
      ...names.map((a) => el("option", {value: a.agent_id}, `${a.name || a.agent_id} (${a.state})`)));
    const button = el("button", {type: "button", class: "quiet", dataset: {assign: c.id}}, "Assign");
    button.addEventListener("click", () => assignCase(c, select.value, button));
    const task = c.task_agent ? `offered to ${c.task_agent}` : "waiting for an agent";
    return el("tr", {dataset: {caseId: c.id, tier: c.tier}},
      el("td", {}, c.id),
      el("td", {}, el("span", {class: "pill", dataset: {tier: c.tier}}, c.tier)),
      el("td", {class: "num overdue-for", dataset: {due: c.due_at || ""}}, overdueFor(c.due_at)),
      el("td", {}, c.reason || ""),
      el("td", {class: "owner"}, c.owner || "unassigned"),
      el("td", {class: "task"}, task),
      el("td", {}, select, button));
  }));
}

function overdueFor(dueAt) {
  return dueAt ? duration(Math.max(0, serverNow() - dueAt) / 1000) : "—";
}

async function assignCase(c, agentId, button) {
  if (!agentId) return;
  button.disabled = true;
  try {
    await api(token, "PATCH", `/api/v1/cases/${encodeURIComponent(c.id)}`, {owner: agentId});
    showError($("error"), null);
  } catch (err) {
    showError($("error"), err);
  } finally {
    button.disabled = false;
  }
  refreshCases();
}

function scheduleCases() {
  if (caseRefresh) return;
  caseRefresh = setTimeout(() => {
    caseRefresh = null;
    refreshCases();
  }, 250);
}

/** First contact met today over every tier: contacts within the due time of the cases judged. */
function firstContactMet(first) {
  let within = 0, judged = 0;
  for (const t of TIERS) {
    const row = first[t] || {};
    within += row.within_due || 0;
    judged += (row.contacted || 0) + (row.overdue_waiting || 0);
  }
  return judged ? within / judged : null;
}

function renderCases(counts) {
  const open = counts.open || {};
  const first = counts.first_contact || {};
  const met = firstContactMet(first);
  const tile = $("complaints");
  tile.hidden = false;
  tile.dataset.sl = counts.overdue > 0 ? "red" : counts.due_soon > 0 ? "amber" : "green";
  fill($("complaint-figures"),
    TIERS.map((t) => figure(`open ${t}`, String(open[t] || 0), {key: `open-${t}`, big: t === "urgent"})),
    figure("overdue", String(counts.overdue), {key: "overdue", level: counts.overdue > 0 ? "red" : undefined}),
    figure("due soon", String(counts.due_soon), {key: "due-soon", level: counts.due_soon > 0 ? "amber" : undefined}),
    figure("first contact met today", pct(met), {key: "first-contact", level: met === null ? undefined : slLevel(met)}));
  $("complaint-first").textContent = TIERS.map((t) => `${t} ${pct((first[t] || {}).met)}`).join(" · ");
  const overdue = Number(counts.overdue) || 0;
  caseAlerts = overdue > 0 ? [`${overdue} complaint case${overdue === 1 ? " is" : "s are"} overdue`] : [];
  renderQueues();
  $("complaints-updated").textContent = new Date().toLocaleTimeString();
}

// --- campaigns ----------------------------------------------------------------------------------------------
// The "Campaigns" tile: each running or paused campaign with its progress (records done of all, on the
// line, waiting for a retry, failed, do-not-call), from GET /api/v1/campaigns every 30 s and after a
// campaign.state event, and live from campaign.progress (at most once a second per campaign).

const CAMPAIGN_SHOWN = new Set(["running", "paused"]);

async function refreshCampaigns() {
  if (!token) return;
  try {
    const {campaigns: list} = await api(token, "GET", "/api/v1/campaigns?limit=50");
    campaigns = new Map(list.filter((c) => CAMPAIGN_SHOWN.has(c.state)).map((c) => [c.id, c]));
    renderCampaigns();
  } catch {
    // the next refresh tries again
  }
}

function scheduleCampaigns() {
  if (campaignRefresh) return;
  campaignRefresh = setTimeout(() => {
    campaignRefresh = null;
    refreshCampaigns();
  }, 250);
}

function renderCampaigns() {
  const tile = $("campaigns");
  const shown = [...campaigns.values()].filter((c) => CAMPAIGN_SHOWN.has(c.state));
  tile.hidden = shown.length === 0;
  if (tile.hidden) return;
  tile.dataset.sl = shown.some((c) => c.state === "running") ? "green" : "amber";
  fill($("campaign-rows"), shown.map((c) => {
    const n = c.counts || {};
    const total = Object.values(n).reduce((a, b) => a + (Number(b) || 0), 0);
    const final = (n.done || 0) + (n.failed || 0) + (n.dnc || 0) + (n.cancelled || 0);
    return el("div", {class: "campaign", dataset: {campaignId: c.id, state: c.state}},
      el("h3", {}, `${c.name} (${c.state})`),
      el("div", {class: "figures"},
        figure("done of all", `${final}/${total}`, {key: "progress", big: true}),
        figure("on the line", String((n.dialing || 0) + (n.answered || 0)), {key: "live"}),
        figure("reached", String(n.done || 0), {key: "done"}),
        figure("retry later", String(n.retry || 0), {key: "retry"}),
        figure("failed", String(n.failed || 0), {key: "failed", level: n.failed > 0 ? "amber" : undefined}),
        figure("do not call", String(n.dnc || 0), {key: "dnc"})));
  }));
  $("campaigns-updated").textContent = new Date().toLocaleTimeString();
}

// --- agents --------------------------------------------------------------------------------------------------

let phoneEvents = 0; // agent.phone events handled: one that came while the list was on its way wins over it

async function refreshAgents() {
  if (!token) return;
  try {
    const asOf = phoneEvents;
    const {agents: list} = await api(token, "GET", "/api/v1/agents");
    const next = new Map();
    for (const a of list) {
      const fetched = {agent_id: a.agent_id, name: a.name, state: a.state || "offline",
                       since: Number(a.state_since) || null, reason: a.reason || "", call_id: a.call_id || "",
                       phone: a.phone || null, by: a.state_by || "",
                       pending: a.pending_state ? {state: a.pending_state, by: a.pending_by || ""} : null};
      const known = agents.get(a.agent_id);
      // an event that came while the list was on its way is newer than the list
      const kept = known && known.call_id === fetched.call_id
        ? {control: known.control, muted: known.muted, monitor: known.monitor, recording: known.recording,
           recording_id: known.recording_id} : {};
      const entry = known && known.since && fetched.since && known.since > fetched.since
        ? {...known, name: fetched.name, phone: known.phone || fetched.phone} : {...fetched, ...kept};
      if (known && known.phoneSeq > asOf) Object.assign(entry, {phone: known.phone, phoneSeq: known.phoneSeq});
      next.set(a.agent_id, entry);
    }
    agents = next;
    renderAgents();
    learnControls();
  } catch (err) {
    showError($("error"), err);
  }
}

/** Agents on a call the page has not seen the control events of (it just opened): read the call's
 * record once for its state (held, consulting, conferenced) and muted flag. */
async function learnControls() {
  for (const a of agents.values()) {
    if (!a.call_id || a.control !== undefined) continue;
    a.control = "";
    try {
      const rec = await api(token, "GET", `/api/v1/calls/${encodeURIComponent(a.call_id)}`);
      if (agents.get(a.agent_id) !== a || a.call_id !== rec.call_id) continue;
      a.control = RECORD_CONTROL[rec.state] || "";
      a.muted = rec.muted === true || rec.muted === "1";
      const m = rec.monitor && typeof rec.monitor === "object" ? rec.monitor : null;
      a.monitor = rec.monitored ? {mode: rec.monitored, by: m ? m.by : "", state: m ? m.state : ""} : null;
      a.recording = rec.recording || a.recording || "";
      a.recording_id = rec.recording_id || a.recording_id || "";
      scheduleAgents();
    } catch {
      // the call ended meanwhile: nothing to show
    }
  }
}

let renderPending = null;

/** Draw the table and the chart once for a burst of events. */
function scheduleAgents() {
  if (renderPending) return;
  renderPending = setTimeout(() => {
    renderPending = null;
    renderAgents();
  }, 50);
}

function renderAgents() {
  const rows = [...agents.values()].sort((a, b) =>
    STATES.indexOf(a.state) - STATES.indexOf(b.state) || a.agent_id.localeCompare(b.agent_id));
  fill($("agent-rows"), rows.map((a) => {
    const c = a.call_id ? calls.get(a.call_id) : null;
    const control = a.control || "";
    return el("tr", {dataset: {agentId: a.agent_id, state: a.state, control, muted: a.muted ? "1" : ""}},
      el("td", {}, a.name || a.agent_id, a.name ? el("span", {class: "muted small"}, ` ${a.agent_id}`) : null),
      el("td", {}, el("span", {class: "pill", dataset: {state: a.state}}, STATE_NAMES[a.state] || a.state),
         a.pending ? el("span", {class: "pill control", dataset: {state: "pending"},
                                 title: `set by ${a.pending.by || "a supervisor"}: applies when the call and its wrap-up are over`},
                        a.pending.state === "offline" ? "signs out after the call" : "break after the call") : null,
         control ? el("span", {class: "pill control", dataset: {state: control}}, CONTROL_TEXT[control]) : null,
         a.muted ? el("span", {class: "pill control", dataset: {state: "muted"}}, "muted") : null,
         // a phone that registers at the edge and is not registered: no calls are offered to this agent
         a.phone && a.phone.mode === "registered" && !a.phone.registered
           ? el("span", {class: "pill", dataset: {registered: "false"}, title: "its phone is not registered: no calls"},
                "no phone") : null),
      el("td", {class: "num since", dataset: {since: a.since || ""}}, a.since ? duration((serverNow() - a.since) / 1000) : "—"),
      el("td", {}, stateReason(a.state, a.reason), a.by ? el("span", {class: "muted small by"}, ` by ${a.by}`) : null),
      callCell(a, c),
      superviseCell(a),
      forceCell(a));
  }));
  const counts = {};
  for (const a of agents.values()) counts[a.state] = (counts[a.state] || 0) + 1;
  drawStateChart($("state-chart"), counts, STATES, STATE_NAMES);
}

// --- forcing an agent's state -------------------------------------------------------------------------

/** Break / Sign out / Available for an agent; on a call (ringing or connected) Break and Sign out apply
 * after the call and its wrap-up (``force``), Available is not offered. */
function forceCell(a) {
  const busy = BUSY.has(a.state);
  const button = (state, text) => el("button", {type: "button", class: "quiet", dataset: {force: state, busy: busy ? "1" : ""},
                                               "aria-label": `${text}: ${a.agent_id}`}, text);
  const out = [];
  if (a.state !== "break" && a.state !== "offline") out.push(button("break", busy ? "Break after call" : "Break"));
  if (a.state !== "offline") out.push(button("offline", busy ? "Sign out after call" : "Sign out"));
  if (a.state === "break" || a.state === "offline") out.push(button("available", "Available"));
  return el("td", {class: "force"}, ...out);
}

async function forceState(agentId, state, busy, button) {
  showError($("error"), null);
  button.disabled = true;
  try {
    const reply = await api(token, "POST", `/api/v1/agents/${encodeURIComponent(agentId)}/force`,
                            {state, reason: "", force: busy});
    const a = agents.get(agentId);
    if (a && !reply.applied) a.pending = {state: reply.pending.state, by: reply.pending.by};
  } catch (err) {
    showError($("error"), err);
  } finally {
    button.disabled = false;
    scheduleAgents();
  }
}

// --- agent figures (GET /api/v1/agents/stats) ------------------------------------------------------------

function ms(v) {
  return duration((Number(v) || 0) / 1000);
}

function secs(v) {
  return v === null || v === undefined ? "—" : duration(v);
}

async function refreshAgentStats() {
  if (!token) return;
  statsAt = Date.now();
  try {
    const data = await api(token, "GET", "/api/v1/agents/stats");
    agentStats = new Map(data.agents.map((a) => [a.agent_id, a]));
    renderAgentStats();
    $("agent-stats-updated").textContent = new Date().toLocaleTimeString();
    if (intervalAgent) showAgentIntervals(intervalAgent);
  } catch {
    // the next refresh tries again (the queues' refresh reports a server that is gone)
  }
}

let statsAt = 0; // when the figures were last asked for (this browser's clock)

/** Fresh figures soon after a change, but at most every STATS_MIN_GAP_MS: a busy floor changes states
 * all the time, and the read grows with the agents (bench/agent_stats.py). */
function scheduleAgentStats() {
  if (statsRefresh) return;
  statsRefresh = setTimeout(() => {
    statsRefresh = null;
    refreshAgentStats();
  }, Math.max(2000, statsAt + STATS_MIN_GAP_MS - Date.now()));
}

function statCells(f) {
  return [el("td", {class: "num", dataset: {stat: "handled"}}, String(f.handled)),
          el("td", {class: "num", dataset: {stat: "aht"}}, secs(f.aht_s)),
          el("td", {class: "num", dataset: {stat: "hold"}}, secs(f.avg_hold_s)),
          el("td", {class: "num", dataset: {stat: "occupancy"}}, pct(f.occupancy)),
          ...SIGNED_IN.map((s) => el("td", {class: "num", dataset: {stat: s}}, ms(f[`ms_${s}`])))];
}

function renderAgentStats() {
  const rows = [...agentStats.values()].sort((a, b) => a.agent_id.localeCompare(b.agent_id));
  fill($("agent-stats-rows"), rows.map((s) => {
    const a = agents.get(s.agent_id);
    return el("tr", {dataset: {agentId: s.agent_id}},
      el("td", {}, (a && a.name) || s.agent_id, a && a.name ? el("span", {class: "muted small"}, ` ${s.agent_id}`) : null),
      ...statCells(s.total),
      el("td", {class: "num", dataset: {stat: "signed-in"}}, ms(s.total.signed_in_ms)),
      el("td", {}, el("button", {type: "button", class: "quiet", dataset: {intervals: s.agent_id}}, "By interval")));
  }));
}

async function showAgentIntervals(agentId) {
  try {
    const data = await api(token, "GET", `/api/v1/agents/${encodeURIComponent(agentId)}/stats?by=interval`);
    intervalAgent = agentId;
    const entry = data.agents[0] || {rows: []};
    $("agent-intervals").hidden = false;
    $("agent-intervals").dataset.agentId = agentId;
    $("agent-intervals-title").textContent = `${agentId} today by interval`;
    fill($("agent-interval-rows"), entry.rows.map((r) => el("tr", {dataset: {start: r.start}},
      el("td", {}, new Date(r.start).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})), ...statCells(r))));
  } catch (err) {
    showError($("error"), err);
  }
}

// --- today by interval (GET /api/v1/queues/{queue}/intervals) ------------------------------------------

function fillHistoryQueues() {
  const names = queues.map((q) => q.queue);
  const select = $("history-queue");
  if ([...select.options].map((o) => o.value).join(",") !== names.join(",")) {
    fill(select, names.map((n) => el("option", {value: n}, n)));
  }
  if (!names.includes(historyQueue)) {
    historyQueue = names[0] || "";
    if (historyQueue) refreshHistory();
  }
  select.value = historyQueue;
}

let historyRefresh = null;
let historyAt = 0;

/** The chart again after queue events: at most every 10 s (a busy queue has events all the time). */
function scheduleHistory() {
  if (historyRefresh) return;
  historyRefresh = setTimeout(() => {
    historyRefresh = null;
    refreshHistory();
  }, Math.max(3000, historyAt + 10000 - Date.now()));
}

async function refreshHistory() {
  if (!token || !historyQueue) return;
  historyAt = Date.now();
  const queue = historyQueue;
  try {
    const data = await api(token, "GET", `/api/v1/queues/${encodeURIComponent(queue)}/intervals`);
    if (queue !== historyQueue) return;
    const q = queues.find((x) => x.queue === queue) || {target: null, stats: {period: {service_level: {}}}};
    const target = queueTarget(q);
    const threshold = data.thresholds.map(String).includes(target.threshold) ? target.threshold : String(data.thresholds[0]);
    $("history-chart").dataset.queue = queue;
    drawIntervalChart($("history-chart"), dayShown(data.intervals), {threshold, target: target.share});
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) fill($("history-chart"), el("p", {class: "muted"}, "No figures yet."));
  }
}

/** Today's intervals from an hour before the first call (at least the last 16): the quiet night is left out
 * so that the bars stay readable; the CSV export has every interval. */
function dayShown(intervals) {
  const busy = intervals.findIndex((iv) => (iv.offered || 0) + (iv.answered || 0) + (iv.abandoned || 0) > 0);
  const from = Math.max(0, Math.min(busy < 0 ? intervals.length : busy - 4, intervals.length - 16));
  return intervals.slice(from);
}

// --- CSV exports ---------------------------------------------------------------------------------------------

/** Fetch ``path`` as CSV with the token, and hand it to the browser as the download ``filename``. */
async function download(path, filename) {
  showError($("error"), null);
  try {
    const response = await fetch(path, {headers: {Authorization: `Bearer ${token}`, Accept: "text/csv"}, cache: "no-store"});
    if (!response.ok) {
      let err = null;
      try { err = (await response.json()).error; } catch { err = null; }
      throw new ApiError(response.status, err ? err.code : `http.${response.status}`,
                         err ? err.message : `the server answered ${response.status}`);
    }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", {href: url, download: filename, hidden: true});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  } catch (err) {
    showError($("error"), err);
  }
}

function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The agent's call: who and which queue; recorded or not; a Play button once its recording is stored. */
function callCell(a, c) {
  if (!a.call_id) return el("td", {class: "call"});
  return el("td", {class: "call", dataset: {callId: a.call_id, recordingId: a.recording_id || ""}},
    c && c.ani ? `${c.ani} · ${c.queue}` : a.call_id,
    a.recording && !a.recording_id
      ? el("span", {class: "pill control rec", dataset: {state: a.recording === "paused" ? "rec-paused" : "rec-on"},
                    title: a.recording === "paused" ? "the recording of this call is paused"
                      : "this call is being recorded"}, a.recording === "paused" ? "recording paused" : "recorded")
      : null,
    a.recording_id ? el("button", {type: "button", class: "quiet", dataset: {play: a.recording_id},
                                   "aria-label": `play the recording of call ${a.call_id}`}, "▶ Play") : null);
}

function scheduleRecent() {
  if (recentRefresh) return;
  recentRefresh = setTimeout(() => {
    recentRefresh = null;
    recent.load();
  }, 250);
}

/** recording.started / .paused / .resumed / .saved / .deleted (the floor's recording events: ids only). */
function onRecordingEvent(ev) {
  const holder = [...agents.values()].find((a) => a.call_id && a.call_id === ev.call_id);
  if (ev.type === "recording.started" || ev.type === "recording.resumed") {
    if (holder) holder.recording = "on";
  } else if (ev.type === "recording.paused") {
    if (holder) holder.recording = "paused";
  } else if (ev.type === "recording.saved") {
    if (holder) holder.recording_id = ev.recording_id;
    scheduleRecent();
  } else if (ev.type === "recording.deleted") {
    for (const a of agents.values()) if (a.recording_id === ev.recording_id) a.recording_id = "";
    scheduleRecent();
  } else {
    return;
  }
  scheduleAgents();
}

// --- live supervision -----------------------------------------------------------------------------------

/** Listen / Whisper / Barge / Stop for an agent on a call; the pressed one is the mode now. */
function superviseCell(a) {
  if (!a.call_id || a.state !== "oncall") return el("td", {class: "supervise"});
  const m = a.monitor || null;
  const button = (action, text, pressed) => {
    const b = el("button", {type: "button", class: "quiet", dataset: {monitor: action},
                            "aria-pressed": pressed ? "true" : "false"}, text);
    b.disabled = action === "stop" && !m;
    b.addEventListener("click", () => supervise(a, action, b));
    return b;
  };
  return el("td", {class: "supervise", dataset: {monitor: m ? m.mode : ""}},
    ...MONITOR_MODES.map((mode) => button(mode, mode[0].toUpperCase() + mode.slice(1), Boolean(m) && m.mode === mode)),
    button("stop", "Stop", false),
    m ? el("span", {class: "pill control", dataset: {state: "monitor"}},
           `${MONITOR_TEXT[m.mode] || m.mode}${m.by ? ` by ${m.by}` : ""}${m.state === "ringing" ? " (ringing)" : ""}`) : null);
}

async function supervise(a, action, button) {
  showError($("error"), null);
  const path = `/api/v1/calls/${encodeURIComponent(a.call_id)}/monitor`;
  button.disabled = true;
  try {
    if (action === "stop") {
      await api(token, "DELETE", path);
      a.monitor = null;
    } else if (a.monitor) {
      await api(token, "PATCH", path, {mode: action});
      a.monitor = {...a.monitor, mode: action};
    } else {
      const phone = (settings.phone || "").trim();
      if (!phone) throw new Error("Enter your phone (a number or your agent id) above first: the call rings it.");
      await api(token, "POST", path, {mode: action, target_type: PHONE_NUMBER.test(phone) ? "number" : "agent",
                                      target: phone});
      a.monitor = {mode: action, by: "", state: "ringing"};  // call.monitor follows when the phone answers
    }
  } catch (err) {
    showError($("error"), err);
  } finally {
    button.disabled = false;
    scheduleAgents();
  }
}

function onAgentState(ev) {
  const a = agents.get(ev.agent_id) || {agent_id: ev.agent_id, name: "", since: null, call_id: ""};
  const ts = Number(ev.ts) || serverNow();
  if (a.since && ts < a.since) return; // older than what the last fetch showed
  Object.assign(a, {state: ev.state, since: ts, reason: ev.reason || "", by: ev.by || ""});
  if (!BUSY.has(ev.state) && ev.state !== "wrapup") a.pending = null; // a pending change applies then
  if (!ON_CALL.has(ev.state) && a.call_id) {
    calls.delete(a.call_id);
    Object.assign(a, {call_id: "", recording: "", recording_id: ""});
  }
  // a consulted agent is marked by call.consult_started before its phone rings: keep it while busy
  if (ev.state !== "oncall" && ev.state !== "reserved") Object.assign(a, {control: undefined, muted: false, monitor: null});
  agents.set(ev.agent_id, a);
}

// --- the feed -----------------------------------------------------------------------------------------------

function onHello() {
  refreshAgents();
  scheduleRecent();
  refreshQueues();
  refreshCases();
}

function onEvent(ev) {
  for (const part of parts) part.onEvent(ev);
  if (ev.type === "agent.state") {
    onAgentState(ev);
    scheduleAgents();
    scheduleAgentStats();
  } else if (ev.type === "agent.state_pending") {
    const a = agents.get(ev.agent_id);
    if (a) a.pending = {state: ev.state, by: ev.by || ""};
    scheduleAgents();
  } else if (ev.type === "agent.phone") {
    const a = agents.get(ev.agent_id);
    if (a) {
      a.phone = {mode: "registered", registered: Boolean(ev.registered), contacts: Number(ev.contacts) || 0};
      a.phoneSeq = ++phoneEvents;
    }
    scheduleAgents();
  } else if (ev.type === "agent.deleted") {
    agents.delete(ev.agent_id);
    scheduleAgents();
  } else if (ev.type === "call.offered") {
    calls.set(ev.call_id, {ani: ev.ani, queue: ev.queue});
    const a = agents.get(ev.agent_id);
    if (a) Object.assign(a, {call_id: ev.call_id, control: "", muted: false, recording: "", recording_id: ""});
    scheduleAgents();
  } else if (ev.type.startsWith("recording.")) {
    onRecordingEvent(ev);
  } else if (floorControl(agents, ev)) {
    scheduleAgents();
  }
  if (QUEUE_EVENTS.has(ev.type)) {
    scheduleQueues();
    scheduleHistory();
  }
  if (ev.type === "call.ended") scheduleAgentStats();
  if (ev.type.startsWith("case.")) scheduleCases();
  if (ev.type === "campaign.progress" && campaigns.has(ev.campaign_id)) {
    Object.assign(campaigns.get(ev.campaign_id), {counts: ev.counts, state: ev.state});
    renderCampaigns();
  } else if (ev.type === "campaign.state" || ev.type === "campaign.deleted") {
    scheduleCampaigns();
  }
}

// --- clocks and settings ---------------------------------------------------------------------------------------

function tick() {
  for (const cell of document.querySelectorAll("#agent-rows td.since")) {
    const since = Number(cell.dataset.since);
    if (since) cell.textContent = duration((serverNow() - since) / 1000);
  }
  if (queues.some((q) => q.stats.waiting > 0)) renderQueues();
  for (const cell of document.querySelectorAll("#overdue-rows td.overdue-for")) {
    cell.textContent = overdueFor(Number(cell.dataset.due));
  }
}

function loadSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}");
    settings.phone = typeof saved.phone === "string" ? saved.phone : "";
  } catch {
    // keep the defaults
  }
  $("sup-phone").value = settings.phone || "";
}

function saveSettings() {
  settings.phone = $("sup-phone").value.trim();
  localStorage.setItem(SETTINGS_KEY, JSON.stringify({phone: settings.phone})); // thresholds are the server's
}

function start() {
  loadSettings();
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError($("error"), null);
    try {
      await signIn($("token").value);
    } catch (err) {
      showError($("error"), err);
    }
  });
  $("signout").addEventListener("click", signOut);
  $("settings").addEventListener("change", saveSettings);
  $("agent-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-play]");
    if (button) player.playId(button.dataset.play);
    const force = event.target.closest("button[data-force]");
    const row = force && force.closest("tr[data-agent-id]");
    if (row) forceState(row.dataset.agentId, force.dataset.force, force.dataset.busy === "1", force);
  });
  $("agent-stats-rows").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-intervals]");
    if (button) showAgentIntervals(button.dataset.intervals);
  });
  $("agent-intervals-close").addEventListener("click", () => {
    intervalAgent = "";
    $("agent-intervals").hidden = true;
  });
  $("agent-stats-csv").addEventListener("click", () => download("/api/v1/agents/stats?format=csv", `agent-stats-${today()}.csv`));
  $("agent-intervals-csv").addEventListener("click", () => {
    if (intervalAgent) {
      download(`/api/v1/agents/${encodeURIComponent(intervalAgent)}/stats?by=interval&format=csv`,
               `agent-stats-${intervalAgent}-${today()}.csv`);
    }
  });
  $("intervals-csv").addEventListener("click", () => {
    if (historyQueue) {
      download(`/api/v1/queues/${encodeURIComponent(historyQueue)}/intervals?format=csv`,
               `queue-${historyQueue}-${today()}.csv`);
    }
  });
  $("history-queue").addEventListener("change", () => {
    historyQueue = $("history-queue").value;
    refreshHistory();
  });
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved).catch((err) => showError($("error"), err));
}

start();

// Two views of the agent desktop that read the API on their own: the agent's call history with a
// search (GET /api/v1/calls: the server gives an agent its own calls only) and the agent's queues
// (GET /api/v1/agents/{id}/queues: callers waiting and the longest wait, counts only).

import {$, ApiError, api, duration, el, fill} from "./common.js";

const PAGE = 20;
const QUEUES_EVERY_MS = 10000;

function when(ms) {
  if (!ms) return "—";
  const d = new Date(ms);
  const today = new Date();
  const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

/** The day after ``yyyy-mm-dd`` (the list's ``to`` is exclusive: the whole last day is in). */
function nextDay(date) {
  const d = new Date(`${date}T00:00:00`);
  d.setDate(d.getDate() + 1);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export class CallHistory {
  /** ``login()`` gives {agent, token} or null. */
  constructor(login) {
    this.login = login;
    this.cursor = null;
    this.busy = false;
    $("history-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.search();
    });
    $("history-more").addEventListener("click", () => this.search({more: true}));
    // read when the agent opens it (not at every sign-in), then kept fresh while open
    $("history-card").addEventListener("toggle", () => { if (this.open()) this.search(); });
  }

  open() {
    return $("history-card").open;
  }

  filters() {
    const query = new URLSearchParams({limit: String(PAGE)});
    const number = $("history-number").value.trim();
    if (number) query.set("number", number.endsWith("*") ? number : `${number}*`); // a prefix search
    if ($("history-from").value) query.set("from", $("history-from").value);
    if ($("history-to").value) query.set("to", nextDay($("history-to").value));
    if ($("history-outcome").value) query.set("outcome", $("history-outcome").value);
    return query;
  }

  /** Nothing typed in the search: the newest calls (refreshed when a call of mine ends). */
  unfiltered() {
    return this.open() && !$("history-number").value.trim() && !$("history-from").value && !$("history-to").value
      && !$("history-outcome").value;
  }

  async search({more = false} = {}) {
    const login = this.login();
    if (!login || this.busy) return;
    const query = this.filters();
    if (more && this.cursor) query.set("cursor", this.cursor);
    this.busy = true;
    $("history-status").textContent = "Searching…";
    try {
      const page = await api(login.token, "GET", `/api/v1/calls?${query}`);
      const rows = page.calls.map((rec) => this.row(rec));
      if (more) $("history-rows").append(...rows);
      else fill($("history-rows"), rows);
      this.cursor = page.next_cursor || null;
      $("history-more").hidden = !this.cursor;
      const shown = $("history-rows").children.length;
      $("history-status").textContent = shown ? `${shown} call${shown === 1 ? "" : "s"}` : "No calls found.";
    } catch (err) {
      $("history-status").textContent = err instanceof ApiError && err.status === 404
        ? "The call history is not available on this server yet." : `Search failed: ${err.describe ? err.describe() : err}`;
    } finally {
      this.busy = false;
    }
  }

  row(rec) {
    const outbound = rec.direction === "outbound";
    const number = outbound ? rec.number || rec.dnis : rec.ani;
    const talk = rec.answered_at && rec.ended_at ? duration((rec.ended_at - rec.answered_at) / 1000) : "—";
    return el("tr", {dataset: {callId: rec.call_id, outcome: rec.outcome || rec.state || ""}},
      el("td", {}, when(rec.started_at)),
      el("td", {}, outbound ? "↗ " : "", number || "unknown"),
      el("td", {}, rec.queue || ""),
      el("td", {class: "num"}, talk),
      el("td", {}, (rec.outcome || rec.state || "").replace(/_/g, " ")),
      el("td", {title: rec.notes || ""}, (rec.disposition || "").replace(/_/g, " ")));
  }

  clear() {
    $("history-card").open = false;
    fill($("history-rows"));
    this.cursor = null;
    $("history-more").hidden = true;
    $("history-status").textContent = "";
  }
}

export class MyQueues {
  constructor(login) {
    this.login = login;
    this.queues = [];
    this.fetchedAt = 0;
    this.timer = null;
  }

  start() {
    this.stop();
    this.refresh();
    this.timer = setInterval(() => this.refresh(), QUEUES_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.queues = [];
    this.fetchedAt = 0;
    fill($("queue-rows"));
    $("queues-empty").hidden = true;
  }

  /** ``fresh``: after one of the agent's own calls changed the counts (the periodic reads share the
   * server's short cache). */
  async refresh(fresh = false) {
    const login = this.login();
    if (!login) return;
    try {
      const path = `/api/v1/agents/${encodeURIComponent(login.agent)}/queues${fresh ? "?fresh=1" : ""}`;
      const data = await api(login.token, "GET", path);
      this.queues = data.queues;
      this.fetchedAt = Date.now();
      this.render();
    } catch {
      // the next refresh tries again; the feed's indicator says when the server is gone
    }
  }

  render() {
    if (!this.fetchedAt) return;
    $("queues-empty").hidden = this.queues.length > 0;
    fill($("queue-rows"), this.queues.map((q) => {
      const wait = q.waiting > 0 ? q.longest_wait_s + (Date.now() - this.fetchedAt) / 1000 : null;
      return el("tr", {dataset: {queue: q.queue, waiting: String(q.waiting)}},
        el("td", {}, q.queue),
        el("td", {class: "num", dataset: {figure: "waiting"}}, String(q.waiting)),
        el("td", {class: "num", dataset: {figure: "longest-wait"}}, wait === null ? "—" : duration(wait)),
        el("td", {class: "num", dataset: {figure: "available"}}, String((q.agents || {}).available || 0)));
    }));
  }
}

// The agent desktop's "My cases" panel: the agent's complaint cases (GET /api/v1/cases: the server
// gives an agent its own only), due soon and overdue, one case's details with its status buttons
// and notes. Refreshed when a case.* event reaches the agent's feed; due times count down each second.
// And the follow-up task card (TaskCard, below).

import {$, api, duration, el, fill, serverNow} from "./common.js";
import {crmView} from "./pop.js";

const PAGE = 50;
// the moves the server allows (ivr/core/case_states.py); it refuses any other with 409
const MOVES = {
  open: ["contacted", "resolved", "closed"],
  contacted: ["resolved", "closed"],
  resolved: ["closed", "reopened"],
  closed: ["reopened"],
  reopened: ["contacted", "resolved", "closed"],
};
const MOVE_TEXT = {contacted: "Contacted", resolved: "Resolved", closed: "Close case", reopened: "Reopen"};
const WAITING = new Set(["open", "reopened"]);
const VIEWS = {mine: "", soon: "due=soon", overdue: "due=overdue"};

/** "due in 1:02:00", "overdue 0:12:30", or nothing once contacted. */
export function dueText(c, now = serverNow()) {
  if (!WAITING.has(c.status) || !c.due_at) return "";
  const left = (c.due_at - now) / 1000;
  return left >= 0 ? `due in ${duration(left)}` : `overdue ${duration(-left)}`;
}

function dueLevel(c, soonS, now = serverNow()) {
  if (!WAITING.has(c.status) || !c.due_at) return "";
  const left = (c.due_at - now) / 1000;
  return left < 0 ? "overdue" : left <= soonS ? "soon" : "";
}

export class MyCases {
  /** ``login()`` gives {agent, token} or null; ``error(err)`` shows a failure. */
  constructor(login, error) {
    this.login = login;
    this.error = error;
    this.view = "mine";
    this.cases = [];
    this.open = null; // the case shown in detail (with its notes)
    this.soonS = 900; // the server's cases.due_soon_s, from the list
    this.pending = null;
    this.burst = new Set();  // the case ids of the events of the burst being waited out ("" = none named)
    for (const button of document.querySelectorAll("#case-views button")) {
      button.addEventListener("click", () => {
        this.view = button.dataset.view;
        this.refresh();
      });
    }
    $("case-note-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.addNote();
    });
    $("case-hide").addEventListener("click", () => this.show(null));
  }

  start() {
    this.view = "mine";
    this.refresh();
  }

  stop() {
    this.cases = [];
    this.open = null;
    fill($("case-rows"));
    this.show(null);
    $("cases-status").textContent = "";
  }

  /** A case.* event of mine: read the list (and the case shown, when any event of the burst was about
   * it, or named no case) again, once for a burst. Every event of the burst counts, not only its
   * first: a new case and a status change of the case shown often come within the same 150 ms. */
  onEvent(ev) {
    this.burst.add(ev.case_id || "");
    if (this.pending) return;
    this.pending = setTimeout(() => {
      const touched = this.burst;
      this.burst = new Set();
      this.pending = null;
      this.refresh();
      if (this.open && (touched.has("") || touched.has(this.open.id))) this.load(this.open.id);
    }, 150);
  }

  async refresh() {
    const login = this.login();
    if (!login) return;
    const query = [`limit=${PAGE}`, VIEWS[this.view]].filter(Boolean).join("&");
    try {
      const page = await api(login.token, "GET", `/api/v1/cases?${query}`);
      this.cases = page.cases;
      this.soonS = page.due_soon_s || this.soonS;
      this.render();
    } catch (err) {
      $("cases-status").textContent = `Cases not available: ${err.describe ? err.describe() : err}`;
    }
  }

  render() {
    for (const button of document.querySelectorAll("#case-views button")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === this.view));
    }
    const now = serverNow();
    fill($("case-rows"), this.cases.map((c) => el("tr", {dataset: {caseId: c.id, status: c.status, due: dueLevel(c, this.soonS, now)}},
      el("td", {class: "case"}, el("button", {type: "button", class: "link", dataset: {open: c.id}}, c.id),
         el("span", {class: "reason muted small"}, c.reason || "")),
      el("td", {}, el("span", {class: "pill", dataset: {tier: c.tier}}, c.tier)),
      el("td", {}, el("span", {class: "pill", dataset: {state: c.status}}, c.status)),
      el("td", {class: "due", dataset: {figure: "due"}}, dueText(c, now) || "—"),
      el("td", {}, c.customer || ""))));
    for (const button of document.querySelectorAll("#case-rows button[data-open]")) {
      button.addEventListener("click", () => this.load(button.dataset.open));
    }
    const overdue = this.cases.filter((c) => dueLevel(c, this.soonS, now) === "overdue").length;
    const soon = this.cases.filter((c) => dueLevel(c, this.soonS, now) === "soon").length;
    $("cases-status").textContent = this.cases.length
      ? `${this.cases.length} case${this.cases.length === 1 ? "" : "s"} · ${soon} due soon · ${overdue} overdue`
      : "No cases here.";
    if (this.open) this.renderDetail();
  }

  /** Each second: the countdowns only. */
  tick() {
    const now = serverNow();
    for (const row of document.querySelectorAll("#case-rows tr")) {
      const c = this.cases.find((x) => x.id === row.dataset.caseId);
      if (!c) continue;
      row.querySelector("td.due").textContent = dueText(c, now) || "—";
      row.dataset.due = dueLevel(c, this.soonS, now);
    }
    if (this.open) $("case-due").textContent = dueText(this.open, now);
  }

  async load(id) {
    const login = this.login();
    if (!login) return;
    try {
      this.show(await api(login.token, "GET", `/api/v1/cases/${encodeURIComponent(id)}`));
    } catch (err) {
      this.error(err);
    }
  }

  show(c) {
    this.open = c;
    $("case-detail").hidden = !c;
    if (c) this.renderDetail();
  }

  renderDetail() {
    const c = this.open;
    const card = $("case-detail");
    card.dataset.caseId = c.id;
    card.dataset.status = c.status;
    $("case-title").textContent = `${c.id} · ${c.tier}`;
    const pill = $("case-status");
    pill.textContent = c.status;
    pill.dataset.state = c.status;
    $("case-due").textContent = dueText(c);
    $("case-reason").textContent = c.reason || "";
    $("case-customer").textContent = [c.customer_name, c.customer].filter(Boolean).join(" · ");
    fill($("case-actions"), (MOVES[c.status] || []).map((status) =>
      el("button", {type: "button", dataset: {status}, class: status === "contacted" ? "primary" : ""}, MOVE_TEXT[status])));
    for (const button of $("case-actions").querySelectorAll("button")) {
      button.addEventListener("click", () => this.setStatus(button.dataset.status));
    }
    fill($("case-notes"), (c.notes || []).map((n) =>
      el("li", {}, el("time", {}, new Date(n.at).toLocaleString()), " ", el("span", {class: "muted"}, n.by), " ",
         el("span", {class: "note-text"}, n.text))));
  }

  async setStatus(status) {
    const login = this.login();
    if (!login || !this.open) return;
    const id = this.open.id;
    try {
      await api(login.token, "PATCH", `/api/v1/cases/${encodeURIComponent(id)}`, {status});
      await this.load(id);
      this.refresh();
    } catch (err) {
      this.error(err);
    }
  }

  async addNote() {
    const login = this.login();
    const text = $("case-note").value;
    if (!login || !this.open || !text.trim()) return;
    const id = this.open.id;
    try {
      await api(login.token, "POST", `/api/v1/cases/${encodeURIComponent(id)}/notes`, {text});
      $("case-note").value = "";
      await this.load(id);
    } catch (err) {
      this.error(err);
    }
  }
}

// --- the follow-up task card -------------------------------------------------------------------------
// A pending case nearing its deadline is offered to me (case.task_offered, the customer's CRM record
// added by the server when the connector finds one): "Dial" accepts it (my phone rings, then the
// customer's), "Skip" declines it. The card goes on case.task_accepted / case.task_declined / expiry.

export class TaskCard {
  /** ``login()`` gives {agent, token} or null; ``error(err)`` shows a failure. */
  constructor(login, error) {
    this.login = login;
    this.error = error;
    this.task = null; // {case_id, tier, reason, customer, customer_name, due_at, overdue, expires, crm, task_kind}
    $("task-dial").addEventListener("click", () => this.act("accept"));
    $("task-skip").addEventListener("click", () => this.act("decline"));
  }

  onEvent(ev) {
    const me = this.login();
    if (!me) return;
    if (ev.type === "case.task_offered" && ev.agent_id === me.agent) {
      this.task = {...ev, expires: Number(ev.task_expires) || null};
      this.render();
      this.load(ev.case_id);
    } else if ((ev.type === "case.task_accepted" || ev.type === "case.task_declined")
               && this.task && ev.case_id === this.task.case_id) {
      this.stop();
    }
  }

  /** After a reload: the task my agent record says I hold (without the CRM record: that came with the event). */
  restore(caseId) {
    if (!caseId || (this.task && this.task.case_id === caseId)) return;
    this.task = {case_id: caseId};
    this.load(caseId);
  }

  /** The case itself: when the offer ends (task_expires), the customer's name, what changed since. */
  async load(id) {
    const login = this.login();
    if (!login) return;
    try {
      const c = await api(login.token, "GET", `/api/v1/cases/${encodeURIComponent(id)}`);
      if (!this.task || this.task.case_id !== id) return;
      if (c.task_agent !== login.agent) return this.stop();
      Object.assign(this.task, {tier: c.tier, reason: c.reason, customer: c.customer, customer_name: c.customer_name,
                                due_at: c.due_at, overdue: c.overdue, expires: Number(c.task_expires) || this.task.expires,
                                task_kind: c.task_kind || this.task.task_kind, status: c.status});
      this.render();
    } catch {
      if (this.task && this.task.case_id === id && !this.task.tier) this.stop(); // nothing to show
    }
  }

  stop() {
    this.task = null;
    $("task").hidden = true;
  }

  render() {
    const t = this.task;
    const card = $("task");
    card.hidden = false;
    card.dataset.caseId = t.case_id;
    card.dataset.overdue = String(Boolean(t.overdue));
    // a closed case's follow-up call (回访) is not a deadline: no due time, a title that says so
    const followup = t.task_kind === "followup";
    card.dataset.kind = followup ? "followup" : "deadline";
    $("task-title").textContent = followup ? `Follow-up call (回访): ${t.case_id}` : `Follow-up: ${t.case_id}`;
    const tier = $("task-tier");
    tier.textContent = t.tier || "";
    tier.dataset.tier = t.tier || "";
    $("task-reason").textContent = t.reason || "";
    $("task-customer").textContent = [t.customer_name, t.customer || "no number"].filter(Boolean).join(" · ");
    fill($("task-crm"), t.crm ? crmView(t.crm) : null);
    $("task-result").textContent = "";
    for (const id of ["task-dial", "task-skip"]) $(id).disabled = false;
    this.tick();
  }

  /** Each second: the case's due time and the offer's countdown; the card goes when the offer ends. */
  tick() {
    const t = this.task;
    if (!t) return;
    const now = serverNow();
    $("task-due").textContent = t.task_kind === "followup" ? "case closed: ask how it went"
      : t.due_at ? dueText({status: "open", due_at: t.due_at}, now) : "";
    const left = t.expires ? Math.ceil((t.expires - now) / 1000) : null;
    $("task-left").textContent = left === null ? "" : duration(Math.max(left, 0));
    if (left !== null && left <= 0) this.stop(); // the server gives it back (case.task_declined, timeout)
  }

  async act(what) {
    const login = this.login();
    const t = this.task;
    if (!login || !t) return;
    for (const id of ["task-dial", "task-skip"]) $(id).disabled = true;
    try {
      await api(login.token, "POST", `/api/v1/cases/${encodeURIComponent(t.case_id)}/task/${what}`);
      if (this.task === t) this.stop();
    } catch (err) {
      if (err.code === "case.task_gone") return this.stop();
      $("task-result").textContent = err.describe ? err.describe() : String(err);
      for (const id of ["task-dial", "task-skip"]) $(id).disabled = false;
      if (err.code !== "number.not_allowed" && err.code !== "case.no_number") this.error(err);
    }
  }
}

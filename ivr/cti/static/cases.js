// The agent desktop's "My cases" panel: the agent's complaint cases (GET /api/v1/cases: the server
// gives an agent its own only), due soon and overdue, one case's details with its status buttons
// and notes. Refreshed when a case.* event reaches the agent's feed; due times count down each second.

import {$, api, duration, el, fill, serverNow} from "./common.js";

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

  /** A case.* event of mine: read the list (and the case shown) again, once for a burst. */
  onEvent(ev) {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.refresh();
      if (this.open && (!ev.case_id || ev.case_id === this.open.id)) this.load(this.open.id);
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

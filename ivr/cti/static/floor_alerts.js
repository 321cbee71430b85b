// The server's floor alerts on the wallboard (docs/alerts.md): a banner of the active alerts (severity
// colour, queue, message, how long), an Ack button each (POST /api/v1/alerts/{id}/ack: the alert stays
// until it clears, dimmed and silent), an optional sound for the rules that ask for one (WebAudio: the
// browser allows it only after a click, so "Sound" is off until the supervisor turns it on), and the
// "Alert history" list (GET /api/v1/alerts/history). Reads GET /api/v1/alerts at start (and every 30 s,
// in case the feed missed something) and follows alert.raised / alert.acknowledged / alert.cleared.
// Renders into #alert-banner.

import {$, api, clockTime, duration, el, fill, serverNow} from "./common.js";

const ORDER = {critical: 0, warning: 1, info: 2};
const RELOAD_MS = 30000;
const TICK_MS = 1000;
const BEEP_EVERY_MS = 10000; // an unacknowledged alert with a sound beeps again this often
const HISTORY_LIMIT = 20;
const SOUND_KEY = "ivr.wallboard.alert-sound"; // whether the supervisor wants the sound (localStorage)

/** The message without the queue it starts with (the banner shows the queue in its own column). */
function withoutQueue(a) {
  const prefix = a.queue ? `${a.queue}: ` : "";
  return prefix && a.message.startsWith(prefix) ? a.message.slice(prefix.length) : a.message;
}

export class AlertBanner {
  /** ``token()`` gives the supervisor's token or null; ``error(err)`` shows an error. */
  constructor({token, error}) {
    this.token = token;
    this.error = error;
    this.alerts = new Map(); // id -> alert
    this.timers = [];
    this.audio = null; // AudioContext, made in a click
    this.soundWanted = localStorage.getItem(SOUND_KEY) === "on";
    this.lastBeep = 0;
    this.historyOpen = false;
    this.history = [];
  }

  get root() {
    return $("alert-banner");
  }

  start() {
    this.alerts.clear();
    this.historyOpen = false;
    this.render();
    this.load();
    this.timers = [setInterval(() => this.load(), RELOAD_MS), setInterval(() => this.tick(), TICK_MS)];
  }

  stop() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.alerts.clear();
    this.history = [];
    const root = this.root;
    if (root) {
      root.replaceChildren();
      root.hidden = true;
    }
  }

  async load() {
    const tok = this.token();
    if (!tok) return;
    try {
      const data = await api(tok, "GET", "/api/v1/alerts");
      this.alerts = new Map(data.alerts.map((a) => [a.id, a]));
      this.render();
    } catch (err) {
      this.error(err);
    }
  }

  onEvent(ev) {
    if (ev.type === "alert.raised") {
      this.alerts.set(ev.id, {...ev, acked_by: null, acked_at: null});
      if (ev.sound) this.lastBeep = 0; // a new alert with a sound beeps at once
    } else if (ev.type === "alert.acknowledged") {
      const a = this.alerts.get(ev.id);
      if (a) Object.assign(a, {acked_by: ev.by, acked_at: ev.acked_at});
    } else if (ev.type === "alert.cleared") {
      this.alerts.delete(ev.id);
    } else {
      return;
    }
    this.render();
    if (this.historyOpen) this.loadHistory();
  }

  sounding() {
    return [...this.alerts.values()].some((a) => a.sound && !a.acked_by);
  }

  tick() {
    for (const node of this.root ? this.root.querySelectorAll("[data-raised-at]") : []) {
      node.textContent = duration((serverNow() - Number(node.dataset.raisedAt)) / 1000);
    }
    this.beep();
  }

  beep() {
    const root = this.root;
    const on = this.sounding() && this.soundWanted;
    if (root) root.dataset.sounding = String(on);
    if (!on || !this.audio || Date.now() - this.lastBeep < BEEP_EVERY_MS) return;
    this.lastBeep = Date.now();
    const ctx = this.audio;
    for (const [i, freq] of [[0, 880], [1, 660]]) {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.15;
      osc.connect(gain).connect(ctx.destination);
      const at = ctx.currentTime + i * 0.25;
      osc.start(at);
      osc.stop(at + 0.2);
    }
  }

  toggleSound() {
    this.soundWanted = !this.soundWanted;
    localStorage.setItem(SOUND_KEY, this.soundWanted ? "on" : "off");
    if (this.soundWanted && !this.audio && window.AudioContext) this.audio = new AudioContext(); // in the click
    if (this.audio && this.audio.state === "suspended") this.audio.resume();
    this.lastBeep = 0;
    this.render();
  }

  async ack(id, button) {
    button.disabled = true;
    try {
      const a = await api(this.token(), "POST", `/api/v1/alerts/${encodeURIComponent(id)}/ack`);
      if (this.alerts.has(id)) this.alerts.set(id, a);
      this.render();
    } catch (err) {
      button.disabled = false;
      this.error(err);
      if (err.status === 409) this.load(); // it cleared meanwhile
    }
  }

  async loadHistory() {
    try {
      const data = await api(this.token(), "GET", `/api/v1/alerts/history?limit=${HISTORY_LIMIT}`);
      this.history = data.alerts;
      this.render();
    } catch (err) {
      this.error(err);
    }
  }

  toggleHistory() {
    this.historyOpen = !this.historyOpen;
    if (this.historyOpen) this.loadHistory();
    this.render();
  }

  render() {
    const root = this.root;
    if (!root) return;
    const alerts = [...this.alerts.values()].sort(
      (a, b) => (ORDER[a.severity] ?? 3) - (ORDER[b.severity] ?? 3) || a.raised_at - b.raised_at);
    const worst = alerts.length ? alerts[0].severity : "none";
    root.hidden = false;
    root.dataset.count = String(alerts.length);
    root.dataset.severity = worst;
    const sound = el("button", {type: "button", class: "alert-sound", "aria-pressed": String(this.soundWanted),
                                title: "Play a sound for the alerts that ask for one (until acknowledged)"},
                     this.soundWanted ? "Sound on" : "Sound off");
    sound.addEventListener("click", () => this.toggleSound());
    const hist = el("button", {type: "button", class: "alert-history-toggle", "aria-expanded": String(this.historyOpen)},
                    "Alert history");
    hist.addEventListener("click", () => this.toggleHistory());
    const head = el("div", {class: "alert-head"},
                    el("strong", {}, alerts.length ? `${alerts.length} active alert${alerts.length > 1 ? "s" : ""}`
                                                   : "No active alerts"),
                    el("span", {class: "alert-tools"}, sound, hist));
    const list = el("ul", {class: "alert-list"}, alerts.map((a) => this.item(a)));
    fill(root, head, list, this.historyOpen ? this.historyList() : null);
    this.beep();
  }

  item(a) {
    const acked = Boolean(a.acked_by);
    let action;
    if (acked) {
      action = el("span", {class: "alert-acked small"}, `acknowledged by ${a.acked_by}`);
    } else {
      action = el("button", {type: "button", class: "alert-ack", dataset: {ack: a.id}}, "Ack");
      action.addEventListener("click", () => this.ack(a.id, action));
    }
    return el("li", {class: "alert-item", dataset: {alertId: a.id, severity: a.severity, rule: a.rule,
                                                     queue: a.queue || "", acked: String(acked)}},
              el("span", {class: "alert-severity", dataset: {severity: a.severity}}, a.severity),
              a.queue ? el("span", {class: "alert-queue"}, a.queue) : el("span", {class: "alert-queue muted"}, "system"),
              el("span", {class: "alert-message"}, withoutQueue(a)),
              el("span", {class: "alert-since small muted"}, "for ",
                 el("span", {dataset: {raisedAt: String(a.raised_at)}}, duration((serverNow() - a.raised_at) / 1000))),
              action);
  }

  historyList() {
    const rows = this.history.map((a) => el("li", {class: "alert-past", dataset: {alertId: a.id, severity: a.severity,
                                                                                 cleared: String(a.cleared_at !== null)}},
      el("span", {class: "alert-severity", dataset: {severity: a.severity}}, a.severity),
      el("span", {class: "small muted"}, clockTime(a.raised_at)),
      el("span", {class: "alert-message"}, a.message),
      el("span", {class: "small muted"},
         a.cleared_at !== null ? `cleared ${clockTime(a.cleared_at)} after ${duration((a.cleared_at - a.raised_at) / 1000)}`
                               : "active",
         a.acked_by ? ` · acknowledged by ${a.acked_by}` : "")));
    return el("section", {class: "alert-history", id: "alert-history"},
              el("h3", {}, "Alert history"),
              rows.length ? el("ol", {}, rows) : el("p", {class: "muted"}, "No alerts in the history."));
  }
}

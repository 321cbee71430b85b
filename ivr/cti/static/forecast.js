// The wallboard's forecast card (issue 21, docs/planning.md): for the queue picked in its select, an SVG
// chart (no library) of today's forecast vs actual offered calls per planning interval, the agents
// required against those signed in now, the "short by N at HH:MM" line, and CSV downloads of the
// forecast and the staffing (fetched with the token, saved from a Blob: a plain link cannot carry it).
// Lists the queues of GET /api/v1/queues; reads /api/v1/queues/{q}/staffing and /forecast every
// minute, and 5 s after a call of the picked queue is queued, answered or abandoned or an agent's
// state changes (once per 5 s however many come).

import {api, el, fill} from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 720, HEIGHT = 220, LEFT = 36, RIGHT = 36, TOP = 12, BOTTOM = 26;
const REFRESH_MS = 60_000;
const EVENT_WAIT_MS = 5000;
// the events that change the chart: calls offered / answered / abandoned, agents signing in or out
const REFRESHING_EVENTS = new Set(["call.queued", "call.answered", "call.abandoned", "agent.state"]);

function node(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

function hhmm(iso) {
  return iso.slice(11, 16);
}

/** A polyline path through the points that have a value (a gap where one is null). */
function path(values, x, y) {
  let d = "", pen = false;
  values.forEach((v, i) => {
    if (v === null || v === undefined) { pen = false; return; }
    d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  return d;
}

/** Draw the forecast and actual offered calls (left axis) and the required / signed-in agents
 * (right axis, steps) of ``rows`` into ``container``. Each series is a path with ``data-series``
 * and ``data-points`` (how many intervals it has a value for). */
export function drawForecastChart(container, rows, nowS) {
  const n = rows.length;
  const forecast = rows.map((r) => r.offered);
  const actual = rows.map((r) => (r.actual ? r.actual.offered : null));
  const required = rows.map((r) => r.required);
  const signed = rows.map((r) => (r.signed_in === null || r.signed_in === undefined ? null : r.signed_in));
  const calls = Math.max(1, ...forecast, ...actual.filter((v) => v !== null));
  const agents = Math.max(1, ...required, ...signed.filter((v) => v !== null));
  const span = WIDTH - LEFT - RIGHT, tall = HEIGHT - TOP - BOTTOM;
  const x = (i) => LEFT + (n > 1 ? span * i / (n - 1) : span / 2);
  const yCalls = (v) => TOP + tall * (1 - v / calls);
  const yAgents = (v) => TOP + tall * (1 - v / agents);
  const label = `Forecast ${Math.round(forecast.reduce((a, b) => a + b, 0))} calls, actual ${
    actual.reduce((a, b) => a + (b || 0), 0)} so far`;
  const svg = node("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, class: "forecast-chart"});
  svg.append(node("line", {class: "axis", x1: LEFT, y1: TOP + tall, x2: WIDTH - RIGHT, y2: TOP + tall}));
  svg.append(node("text", {class: "tick", x: 2, y: TOP + 10}, String(Math.round(calls))));
  svg.append(node("text", {class: "tick", x: WIDTH - RIGHT + 4, y: TOP + 10}, `${agents} ag.`));
  const every = Math.max(1, Math.round(n / 8));
  rows.forEach((r, i) => {
    if (i % every === 0) svg.append(node("text", {class: "tick", x: x(i) - 14, y: HEIGHT - 6}, hhmm(r.start)));
  });
  const nowAt = rows.findIndex((r, i) => r.start_s <= nowS && (i + 1 >= n || rows[i + 1].start_s > nowS));
  if (nowAt >= 0) svg.append(node("line", {class: "now", x1: x(nowAt), y1: TOP, x2: x(nowAt), y2: TOP + tall}));
  const series = [["forecast", forecast, yCalls], ["actual", actual, yCalls], ["required", required, yAgents],
                  ["signed-in", signed, yAgents]];
  for (const [name, values, y] of series) {
    const points = values.filter((v) => v !== null && v !== undefined).length;
    svg.append(node("path", {class: `series series-${name}`, d: path(values, x, y), "data-series": name,
                             "data-points": points}));
  }
  container.replaceChildren(svg);
}

async function download(token, url, filename) {
  const response = await fetch(url, {headers: {"Authorization": `Bearer ${token}`, "Accept": "text/csv"},
                                     cache: "no-store"});
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  const a = el("a", {href, download: filename});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

export class ForecastCard {
  /** ``token()`` gives the supervisor's token or null; ``error(err)`` shows an error. */
  constructor({token, error}) {
    this.token = token;
    this.error = error;
    this.root = document.getElementById("forecast-card");
    this.timer = null;
    this.pending = null;
    this.queue = "";
    this.running = false;
  }

  start() {
    if (!this.root) return;
    this.running = true;
    this.build();
    this.root.hidden = false;
    this.loadQueues();
    this.timer = setInterval(() => this.loadQueues(), REFRESH_MS); // new queues join the select
  }

  stop() {
    this.running = false;
    clearInterval(this.timer);
    clearTimeout(this.pending);
    this.timer = this.pending = null;
    if (this.root) {
      this.root.hidden = true;
      this.root.replaceChildren();
    }
  }

  onEvent(ev) {
    if (!this.running || !ev || !REFRESHING_EVENTS.has(ev.type)) return;
    const q = ev.data && ev.data.queue;
    if (q && q !== this.queue) return;
    if (this.pending) return; // one refresh per EVENT_WAIT_MS however busy the floor is
    this.pending = setTimeout(() => { this.pending = null; this.refresh(); }, EVENT_WAIT_MS);
  }

  build() {
    this.select = el("select", {id: "forecast-queue", "aria-label": "Queue"});
    this.select.addEventListener("change", () => { this.queue = this.select.value; this.refresh(); });
    this.short = el("p", {id: "forecast-short", class: "forecast-short", role: "status"});
    this.meta = el("p", {id: "forecast-meta", class: "muted"});
    this.chart = el("div", {id: "forecast-chart", class: "forecast-chart-box"});
    const csv = (kind) => {
      const b = el("button", {type: "button", "data-csv": kind}, `${kind === "forecast" ? "Forecast" : "Staffing"} CSV`);
      b.addEventListener("click", () => this.csv(kind));
      return b;
    };
    const legend = el("p", {class: "forecast-legend"},
                      el("span", {class: "key key-forecast"}, "Forecast"), " ",
                      el("span", {class: "key key-actual"}, "Actual"), " ",
                      el("span", {class: "key key-required"}, "Agents required"), " ",
                      el("span", {class: "key key-signed-in"}, "Signed in now"));
    fill(this.root, el("h2", {}, "Forecast and staffing today"),
         el("div", {class: "forecast-tools"}, el("label", {}, "Queue ", this.select), csv("forecast"), csv("staffing")),
         this.short, this.chart, legend, this.meta);
  }

  async loadQueues() {
    const token = this.token();
    if (!token) return;
    try {
      // the floor's queue list (cheap); GET /api/v1/staffing would forecast every queue first
      const data = await api(token, "GET", "/api/v1/queues");
      const names = data.queues.map((q) => q.queue);
      if (!this.running) return;
      const shown = Array.from(this.select.options, (o) => o.value);
      if (shown.join("\n") !== names.join("\n")) fill(this.select, ...names.map((q) => el("option", {value: q}, q)));
      if (!names.includes(this.queue)) this.queue = names[0] || "";
      this.select.value = this.queue;
      if (!names.length) {
        fill(this.chart, el("p", {class: "muted"}, "No queues yet."));
        return;
      }
      await this.refresh();
    } catch (err) {
      this.error(err);
    }
  }

  async refresh() {
    const token = this.token();
    if (!token || !this.queue || !this.running) return;
    const q = encodeURIComponent(this.queue);
    try {
      const [staffing, forecast] = await Promise.all([api(token, "GET", `/api/v1/queues/${q}/staffing`),
                                                      api(token, "GET", `/api/v1/queues/${q}/forecast`)]);
      if (!this.running || staffing.queue !== this.queue) return;
      const actual = new Map(forecast.intervals.map((r) => [r.start_s, r.actual]));
      const rows = staffing.intervals.map((r) => ({...r, actual: actual.get(r.start_s) || r.actual}));
      drawForecastChart(this.chart, rows, Date.now() / 1000);
      const s = staffing.short || {};
      this.short.dataset.short = s.by > 0 ? "true" : "false";
      this.short.textContent = s.text ? `${this.queue}: ${s.text}`
        : staffing.signed_in_now === null ? `${this.queue}: no agent signed in for this queue yet`
          : `${this.queue}: enough agents for the next intervals (${staffing.signed_in_now} signed in)`;
      const errs = forecast.backtest.errors || {};
      const err = (m) => (errs[m] && errs[m].wape !== null ? `${m.replace("_", "-")} WAPE ${Math.round(errs[m].wape * 100)} %` : null);
      const target = staffing.target;
      this.meta.textContent = [
        forecast.method ? `Method: ${forecast.method.replace("_", "-")} (${forecast.chosen_by})` : "No history yet: nothing to forecast from",
        ...Object.keys(errs).map(err).filter(Boolean),
        `target ${Math.round(target.share * 100)} % in ${target.threshold_s} s`,
        `shrinkage ${Math.round(staffing.shrinkage * 100)} %`,
      ].join(" · ");
    } catch (err) {
      this.error(err);
    }
  }

  async csv(kind) {
    const token = this.token();
    if (!token || !this.queue) return;
    const day = new Date();
    const date = `${day.getFullYear()}-${String(day.getMonth() + 1).padStart(2, "0")}-${String(day.getDate()).padStart(2, "0")}`;
    try {
      await download(token, `/api/v1/queues/${encodeURIComponent(this.queue)}/${kind}?format=csv&date=${date}`,
                     `${kind}-${this.queue}-${date}.csv`);
    } catch (err) {
      this.error(err);
    }
  }
}

// Shared by the agent desktop and the wallboard: DOM building (text only, never markup), the REST
// client, the server clock, and the event feed that reconnects without losing or doubling events.

/** An element with attributes and children; strings become text nodes (never parsed as HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace every child of ``node``. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const $ = (id) => document.getElementById(id);

/** The reason worth showing next to a state (routing's own reasons, e.g. "offer", are not). */
export function stateReason(state, reason) {
  return reason && (state === "break" || state === "offline" || state === "wrapup") ? reason.replace(/_/g, " ") : "";
}

/** A link to an http(s) address only (a javascript: or data: link from a CRM is dropped). */
export function safeHref(raw) {
  if (typeof raw !== "string" || raw === "") return null;
  try {
    const url = new URL(raw, location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

// --- time ------------------------------------------------------------------------------------------

let clockOffsetMs = 0; // server clock minus this browser's, from the Date header of API replies

/** Now on the server's clock (ms): times in state are measured against server timestamps. */
export function serverNow() {
  return Date.now() + clockOffsetMs;
}

function noteServerDate(response) {
  const date = Date.parse(response.headers.get("Date") || "");
  // the header has whole seconds: only correct clocks that are clearly off
  if (!Number.isNaN(date) && Math.abs(date + 500 - Date.now()) > 2000) clockOffsetMs = date + 500 - Date.now();
}

/** ``75`` -> ``1:15``, ``3725`` -> ``1:02:05``. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

// --- REST --------------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  describe() {
    return this.code ? `${this.message} (${this.code})` : this.message;
  }
}

/** A JSON request with the bearer token; an ``ApiError`` carries the API's error code and message. */
export async function api(token, method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {"Authorization": `Bearer ${token}`, ...(body === undefined ? {} : {"Content-Type": "application/json"})},
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  noteServerDate(response);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = data && data.error;
    throw new ApiError(response.status, err ? err.code : `http.${response.status}`,
                       err ? err.message : `the server answered ${response.status}`);
  }
  return data;
}

// --- event ids ------------------------------------------------------------------------------------------

/** Redis stream ids ("1700000000000-3") compared as (ms, seq). */
export function compareIds(a, b) {
  const [am, as] = a.split("-").map(Number), [bm, bs] = b.split("-").map(Number);
  return am !== bm ? am - bm : (as || 0) - (bs || 0);
}

// --- the live feed --------------------------------------------------------------------------------------

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
const WATCHDOG_MS = 5000;
const SILENCE_MS = 40000; // two server pings (15 s) missed, and some slack

/**
 * A WebSocket on the API's event feed that comes back by itself.
 *
 * Every event carries its stream id. The feed remembers the last id it handed on (also in
 * sessionStorage under ``storageKey`` when given, so a reload resumes too) and reconnects with ``?last_event_id=``: the server sends
 * exactly what was missed, then the live events. Ids at or before the last one are dropped, so an
 * event is never handled twice. The browser's offline/online events close and reopen the socket at
 * once (a dropped network does not close a WebSocket by itself).
 *
 * ``status`` gets "connecting", "connected", "retrying" (with the delay), "offline" or "stopped";
 * ``check`` is called after a failed attempt: it throws when the login is no longer valid.
 * ``resume: false`` reconnects without a replay, for a page that fetches the whole picture again
 * at each hello (the wallboard).
 */
export class EventFeed {
  constructor({path, token, storageKey = null, resume = true, params = {}, onHello, onEvent, onStatus, check}) {
    Object.assign(this, {path, token, storageKey, resume, params, onHello, onEvent, onStatus, check});
    this.lastId = storageKey ? sessionStorage.getItem(storageKey) : null; // the last event handled
    this.helloId = null; // the stream's last id when the first socket opened (before any event came)
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.heardAt = 0; // when the socket last brought anything (the server pings an idle one every 15 s)
    this.watchdog = setInterval(() => this.checkAlive(), WATCHDOG_MS);
    this.onOffline = () => this.drop();
    this.onOnline = () => { if (!this.ws) this.open(); };
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const cursor = this.resume ? this.lastId || this.helloId : null;
    const query = new URLSearchParams(this.params);
    if (cursor) query.set("last_event_id", cursor);
    const qs = query.toString();
    return `${scheme}//${location.host}${this.path}${qs ? "?" + qs : ""}`;
  }

  /** Send ``message`` (JSON) on the open socket; false when there is none. */
  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** A socket that brought nothing (not even a ping) for too long is half-open: reconnect. */
  checkAlive() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && Date.now() - this.heardAt > SILENCE_MS) {
      const ws = this.ws;
      this.ws = null;
      ws.close(4000, "no ping");
      this.retry();
    }
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.ws) return;
    if (!navigator.onLine) {
      this.onStatus("offline");
      return;
    }
    this.onStatus("connecting");
    const ws = new WebSocket(this.url(), ["hotline", `bearer.${this.token}`]);
    this.ws = ws;
    let greeted = false;
    this.heardAt = Date.now();
    ws.onmessage = (msg) => {
      if (ws !== this.ws) return;
      this.heardAt = Date.now();
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (ev.type === "ping") return;
      if (ev.type === "hello") {
        greeted = true;
        this.attempt = 0;
        // Not a filter: events queued for this socket before the hello may have older ids.
        if (!this.lastId && !this.helloId) this.helloId = ev.last_event_id || null;
        this.onStatus("connected");
        this.onHello(ev);
        return;
      }
      if (ev.id) {
        if (this.lastId && compareIds(ev.id, this.lastId) <= 0 && ev.type !== "replay.gap") return;
        this.remember(ev.id);
      }
      this.onEvent(ev);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (!greeted) this.verify();
      this.retry();
    };
  }

  remember(id) {
    this.lastId = id;
    if (this.storageKey) sessionStorage.setItem(this.storageKey, id);
  }

  async verify() {
    try {
      await this.check();
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        this.stop();
        this.onStatus("stopped", err);
      }
    }
  }

  retry() {
    if (this.stopped) return;
    if (!navigator.onLine) {
      this.onStatus("offline");
      return;
    }
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempt += 1;
    this.onStatus("retrying", delay);
    this.timer = setTimeout(() => this.open(), delay);
  }

  /** The network went away: close the socket now (it would hang), reopen on the online event. */
  drop() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "offline");
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.stopped) this.onStatus("offline");
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "signed out");
  }
}

const STATUS_TEXT = {
  connecting: "Connecting…",
  connected: "Live",
  retrying: "Reconnecting",
  offline: "Offline: waiting for the network",
  stopped: "Disconnected",
};

/** Show a feed status in the indicator ``node`` (its ``data-status`` is the raw status). */
export function showStatus(node, status, detail) {
  node.dataset.status = status;
  let text = STATUS_TEXT[status] || status;
  if (status === "retrying") text += ` in ${Math.ceil(detail / 1000)} s`;
  if (status === "stopped" && detail) text += `: ${detail.describe ? detail.describe() : detail}`;
  node.textContent = text;
}

/** Show ``err`` (an ApiError or any error) in the message area ``node``; null clears it. */
export function showError(node, err) {
  if (!err) {
    node.hidden = true;
    node.textContent = "";
    return;
  }
  node.hidden = false;
  node.textContent = err instanceof ApiError ? err.describe() : String(err.message || err);
}

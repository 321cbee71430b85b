// Call recordings in the pages (docs/recording.md "Playback in the pages"): the desktop's recording
// bar on a live call (Recorded / Recording paused / Not recorded, with Start / Pause / Resume), a list
// of recordings (the agent's own on the desktop, the newest on the wallboard) and one player per page.
//
// The player: an <audio src> cannot send the bearer token, so the page asks the API for a play link
// (POST /api/v1/recordings/{id}/play, with the token as every other request: audited there) and the
// <audio> plays that link: the browser streams it and seeks with HTTP Range requests, so playing
// starts at once and a seek fetches only what it needs. A link opens that one recording for a few
// minutes; the page's Content-Security-Policy allows media from this host only.

import {$, ApiError, api, duration, el, fill} from "./common.js";

/** What the call record's ``recording`` field (and the recording.* events) mean on the desktop. */
export const RECORDING_TEXT = {on: "Recorded", paused: "Recording paused", "": "Not recorded"};

const EVENT_STATE = {"recording.started": "on", "recording.paused": "paused", "recording.resumed": "on"};

/** Apply a recording.* event to the desktop's ``call``; true when ``ev`` was one. */
export function applyRecording(call, ev) {
  const state = EVENT_STATE[ev.type];
  if (!state) return false;
  call.recording = state;
  call.recording_refused = "";
  return true;
}

/** The activity line of each recording event. */
export const RECORDING_EVENT_TEXT = {
  "recording.started": (ev) => (ev.by && ev.by !== "policy" ? `Recording started by ${ev.by}` : "Recording started"),
  "recording.paused": (ev) => (ev.by === "sensitive" ? "Recording paused while the caller keys in private data"
    : "Recording paused"),
  "recording.resumed": () => "Recording resumed",
};

const AUDIO_PATH = /^\/api\/v1\/recordings\/R[0-9a-f]{20}\/audio$/;
const AUDIO_LINK = /^\/api\/v1\/recordings\/R[0-9a-f]{20}\/audio\?play=[0-9]+\.[A-Za-z0-9_.-]+\.[A-Za-z0-9_-]+$/;

function when(ms) {
  if (!ms) return "—";
  const d = new Date(Number(ms));
  const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  return d.toDateString() === new Date().toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

// --- the desktop's recording bar -------------------------------------------------------------------------

export class RecordingControls {
  /** ``login()``: {agent, token} or null; ``call()``: the desktop's call or null; ``error(err)`` shows an
   * error in the page's message area (null clears it). */
  constructor({login, call, error}) {
    Object.assign(this, {login, call, error});
    this.pending = "";
    for (const action of ["start", "pause", "resume"]) {
      $(`rec-${action}`).addEventListener("click", () => this.command(action));
    }
  }

  /** POST recording/start|pause|resume; what the bar then shows comes from the recording event. A
   * refusal is said next to the buttons (and in the message area), never dropped. */
  async command(action) {
    const login = this.login(), call = this.call();
    if (!login || !call || this.pending) return;
    this.error(null);
    this.pending = action;
    call.recording_refused = "";
    this.render(true);
    try {
      await api(login.token, "POST", `/api/v1/calls/${encodeURIComponent(call.call_id)}/recording/${action}`);
    } catch (err) {
      if (err instanceof ApiError && err.code === "recording.not_allowed") {
        call.recording_refused = `This call cannot be recorded: ${err.describe()}`;
      }
      this.error(err);
    } finally {
      this.pending = "";
      this.render(true);
    }
  }

  /** Show the bar while the agent talks with the caller (``live``). */
  render(live) {
    const call = this.call();
    const bar = $("rec-bar");
    bar.hidden = !live || !call;
    if (bar.hidden) return;
    const state = call.recording === "on" || call.recording === "paused" ? call.recording : "";
    bar.dataset.state = state || "off";
    const pill = $("rec-status");
    pill.dataset.state = state ? `rec-${state}` : "rec-off";
    pill.textContent = RECORDING_TEXT[state];
    $("rec-start").hidden = Boolean(state);
    $("rec-start").disabled = Boolean(this.pending) || Boolean(call.recording_refused);
    $("rec-pause").hidden = state !== "on";
    $("rec-pause").disabled = Boolean(this.pending);
    $("rec-resume").hidden = state !== "paused";
    $("rec-resume").disabled = Boolean(this.pending);
    const note = $("rec-note");
    note.textContent = call.recording_refused || "";
    note.hidden = !call.recording_refused;
  }
}

// --- the player ------------------------------------------------------------------------------------------------

export class RecordingPlayer {
  /** The page's player box (#rec-player-box: #rec-player, #rec-player-label, #rec-player-close). */
  constructor({token, error}) {
    Object.assign(this, {token, error});
    this.audio = $("rec-player");
    this.loading = null; // the AbortController of the link request on its way
    $("rec-player-close").addEventListener("click", () => this.close());
    // a link that stopped working while playing (expired before a late seek, the file deleted meanwhile)
    this.audio.addEventListener("error", () => {
      const box = $("rec-player-box");
      if (box.hidden || !this.audio.getAttribute("src")) return;
      box.dataset.status = "failed";
      $("rec-player-label").textContent = "The recording could not be played: press Play again.";
    });
    window.addEventListener("pagehide", () => this.close());
  }

  /** Play the recording of id ``id`` (its record is read first: the audio URL comes from the API). */
  async playId(id) {
    try {
      await this.play(await api(this.token(), "GET", `/api/v1/recordings/${encodeURIComponent(id)}`));
    } catch (err) {
      this.error(err);
    }
  }

  /** Play ``rec``'s audio through a play link (streamed, seeking with Range). */
  async play(rec) {
    const token = this.token();
    if (!token || !AUDIO_PATH.test(String(rec.audio_url || ""))) return;
    this.error(null);
    this.close();
    const box = $("rec-player-box");
    box.hidden = false;
    box.dataset.recordingId = rec.id;
    box.dataset.status = "loading";
    $("rec-player-label").textContent = `Loading the recording of call ${rec.call_id || rec.id}…`;
    const loading = new AbortController();
    this.loading = loading;
    let link;
    try {
      link = await api(token, "POST", `${rec.audio_url.replace(/\/audio$/, "")}/play`);
    } catch (err) {
      if (loading.signal.aborted) return; // another recording was asked for meanwhile
      this.loading = null;
      box.dataset.status = "failed";
      $("rec-player-label").textContent = "The recording could not be loaded.";
      this.error(err instanceof ApiError ? err : new ApiError(0, "network", "the server cannot be reached"));
      return;
    }
    if (this.loading !== loading || !AUDIO_LINK.test(String(link.url || ""))) return;
    this.loading = null;
    this.audio.src = link.url;
    box.dataset.status = "ready";
    const agents = Array.isArray(rec.agents) && rec.agents.length ? ` · ${rec.agents.join(", ")}` : "";
    $("rec-player-label").textContent = `Call ${rec.call_id || ""} · ${when(rec.started_at)} · `
      + `${duration(Number(rec.duration_ms) / 1000)}${rec.queue ? ` · ${rec.queue}` : ""}${agents}`;
    // the click was a while ago (the download): a browser that wants a fresh one leaves it to the controls
    this.audio.play().catch((err) => {
      if (err && err.name === "NotAllowedError") $("rec-player-label").textContent += " (press play)";
    });
  }

  /** Stop, forget the link, hide the box. */
  close() {
    if (this.loading) this.loading.abort();
    this.loading = null;
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
    const box = $("rec-player-box");
    box.hidden = true;
    box.dataset.status = "";
    delete box.dataset.recordingId;
  }
}

// --- a list of recordings -----------------------------------------------------------------------------------

export class RecordingList {
  /**
   * GET /api/v1/recordings, newest first, into #rec-rows (#rec-list-status, #rec-more: the next page
   * by ``next_cursor`` when ``paging``). ``agent`` adds the agent column (the wallboard).
   */
  constructor({token, player, limit = 20, paging = true, agent = false}) {
    Object.assign(this, {token, player, limit, paging, agent});
    this.cursor = null;
    this.busy = false;
    this.waitTimer = null;
    $("rec-more").addEventListener("click", () => this.load({more: true}));
    $("rec-rows").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-play]");
      const rec = button ? this.shown.get(button.dataset.play) : null;
      if (rec) this.player.play(rec);
    });
    this.shown = new Map(); // id -> record of the rows on screen
  }

  async load({more = false} = {}) {
    const token = this.token();
    if (!token || this.busy) return;
    const query = new URLSearchParams({limit: String(this.limit)});
    if (more && this.cursor) query.set("cursor", this.cursor);
    this.busy = true;
    $("rec-list-status").textContent = "Loading…";
    try {
      const page = await api(token, "GET", `/api/v1/recordings?${query}`);
      if (!more) this.shown.clear();
      const rows = page.recordings.filter((r) => !this.shown.has(r.id)).map((r) => this.row(r));
      if (more) $("rec-rows").append(...rows);
      else fill($("rec-rows"), rows);
      this.cursor = this.paging ? page.next_cursor || null : null;
      $("rec-more").hidden = !this.cursor;
      const n = this.shown.size;
      $("rec-list-status").textContent = n ? `${n} recording${n === 1 ? "" : "s"}` : "No recordings yet.";
    } catch (err) {
      $("rec-list-status").textContent = `The recordings could not be read: ${err.describe ? err.describe() : err}`;
    } finally {
      this.busy = false;
    }
  }

  row(rec) {
    this.shown.set(rec.id, rec);
    const pauses = Array.isArray(rec.pauses) ? rec.pauses.length : 0;
    return el("tr", {dataset: {recordingId: rec.id, callId: rec.call_id || ""}},
      el("td", {}, when(rec.started_at)),
      this.agent ? el("td", {}, Array.isArray(rec.agents) && rec.agents.length ? rec.agents.join(", ") : rec.agent_id || "")
        : null,
      el("td", {}, rec.queue || ""),
      el("td", {class: "num"}, duration(Number(rec.duration_ms) / 1000)),
      el("td", {}, pauses ? `${pauses} pause${pauses === 1 ? "" : "s"}` : ""),
      el("td", {}, el("button", {type: "button", class: "quiet", dataset: {play: rec.id},
                                 "aria-label": `play the recording of call ${rec.call_id || rec.id}`}, "▶ Play")));
  }

  /** A recorded call of mine ended: its recording is indexed once the worker has compressed it
   * (seconds later; the agent's feed has no event for it). Read the list again a few times, until
   * the call is in it (bounded: the last try is about a minute after the call). */
  expect(callId) {
    clearTimeout(this.waitTimer);
    const delays = [1500, 3000, 5000, 10000, 20000, 30000];
    const next = (i) => {
      if (i >= delays.length) return;
      this.waitTimer = setTimeout(async () => {
        if (!this.token()) return;
        await this.load();
        if (![...this.shown.values()].some((r) => r.call_id === callId)) next(i + 1);
      }, delays[i]);
    };
    next(0);
  }

  clear() {
    clearTimeout(this.waitTimer);
    this.shown.clear();
    this.cursor = null;
    fill($("rec-rows"));
    $("rec-more").hidden = true;
    $("rec-list-status").textContent = "";
  }
}

// The desktop's browser phone ("Browser phone" card): SIP over the edge's secure WebSocket with
// SIP.js (served from the npm lock's install, /static/lib/sip.js/), registering with the agent's SIP
// credentials: the password an admin set, typed once by the agent and kept in this tab's
// sessionStorage (a reload registers again), sent only to the edge, never to the API. The API says
// where to register (GET /api/v1/agents/{id}/webrtc). An incoming call rings only once the desktop
// has painted its pop (popPainted), so the pop-before-ring guarantee holds for this phone too.

import {$, api, el, fill} from "./common.js";

// SIP.js's state values (api/session-state.js, api/registerer-state.js): the library itself is
// loaded only when the agent turns the phone on (a desktop without it never fetches its modules)
const SessionState = {Initial: "Initial", Establishing: "Establishing", Established: "Established",
                      Terminating: "Terminating", Terminated: "Terminated"};
const RegistererState = {Initial: "Initial", Registered: "Registered", Unregistered: "Unregistered",
                         Terminated: "Terminated"};
let library = null;
const loadSip = () => (library ??= import("./lib/sip.js/index.js").catch((err) => {
  library = null;
  throw err;
}));

const KEY = {password: "ivr.desktop.sip_password", mic: "ivr.desktop.mic", speaker: "ivr.desktop.speaker"};
const RETRY_MAX_S = 30;  // reconnection back-off: 1, 2, 4 ... 30 s, then every 30 s while the page is open
const POP_WAIT_MS = 5000; // an INVITE without a pop (not a hotline offer, or the pop never came) rings after this
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];
const CALL_HEADER = "X-Ivr-Call-Id"; // the hotline's call id, when the worker's INVITE carries it
const METER_MS = 100;     // level meters' refresh

const STATE_TEXT = {
  off: "not connected", connecting: "connecting…", registered: "registered", unregistered: "unregistered",
  reconnecting: "reconnecting…", failed: "failed",
};

/** What a failure means for the agent, in words (and what to do). */
function explain(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "Microphone blocked: allow the microphone for this page in the browser's site settings, then connect again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") return "No microphone found: plug in a headset and connect again.";
  if (name === "NotReadableError") return "The microphone is in use by another program or failed to start.";
  return (err && err.message) || String(err);
}

export class BrowserPhone {
  /** login(): {agent, token} or null; onChange(state): the desktop's hook (the phone line, activity). */
  constructor({login, onChange = () => {}}) {
    this.login = login;
    this.onChange = onChange;
    this.ua = null;
    this.registerer = null;
    this.config = null;
    this.state = "off";
    this.detail = "";
    this.session = null;       // the call on this phone (an Invitation)
    this.pending = null;       // an Invitation waiting for its pop: {invitation, callId, timer}
    this.painted = new Map();  // call id -> {at: when its pop was painted (ms), who: its caller}, the last few
    this.retry = {timer: null, delay: 1};
    this.meters = null;
    this.ringer = null;
    this.muted = false;
    this.stopping = false;
    this.popCall = null;       // the call whose pop is on screen and ringing
    this.callId = "";          // the hotline call of the session (its INVITE's X-Ivr-Call-Id), if it said
    this.callState = "";       // "", "waiting-for-pop", "ringing", "connected", "ending"
  }

  // --- what the desktop's pop asks -------------------------------------------------------------------

  get registered() {
    return this.state === "registered";
  }

  /** Whether this phone's call is the hotline call ``callId`` (its INVITE's X-Ivr-Call-Id; an INVITE
   * without the header belongs to the pop that was on screen when it rang). */
  isFor(callId) {
    return Boolean(this.session) && Boolean(callId) && this.callId === callId;
  }

  /** Whether the phone rings for the hotline call ``callId``. */
  ringsFor(callId) {
    return this.callState === "ringing" && this.isFor(callId);
  }

  /** Whether the phone is on the hotline call ``callId``. */
  talksFor(callId) {
    return this.callState === "connected" && this.isFor(callId);
  }

  // --- the card ------------------------------------------------------------------------------------

  bind() {
    $("sp-login").addEventListener("submit", (event) => {
      event.preventDefault();
      const password = $("sp-password").value;
      if (password) sessionStorage.setItem(KEY.password, password);
      if (!sessionStorage.getItem(KEY.password)) return;
      $("sp-password").value = "";
      this.start();
    });
    $("sp-disconnect").addEventListener("click", () => this.stop({forget: true}));
    $("sp-answer").addEventListener("click", () => this.answer());
    $("sp-reject").addEventListener("click", () => this.reject());
    $("sp-hangup").addEventListener("click", () => this.hangup());
    $("sp-mute").addEventListener("click", () => this.mute(!this.muted));
    $("sp-keypad-toggle").addEventListener("click", () => {
      const box = $("sp-keys");
      box.hidden = !box.hidden;
      $("sp-keypad-toggle").setAttribute("aria-expanded", String(!box.hidden));
    });
    fill($("sp-keys"), ...KEYS.map((key) => {
      const button = el("button", {type: "button", "data-key": key}, key);
      button.addEventListener("click", () => this.dtmf(key));
      return button;
    }));
    $("sp-mic").addEventListener("change", () => sessionStorage.setItem(KEY.mic, $("sp-mic").value));
    $("sp-speaker").addEventListener("change", () => {
      sessionStorage.setItem(KEY.speaker, $("sp-speaker").value);
      this.applySpeaker();
    });
    if (navigator.mediaDevices) navigator.mediaDevices.addEventListener("devicechange", () => this.listDevices());
    window.addEventListener("online", () => { if (this.state === "reconnecting") this.reconnect(true); });
    this.render();
  }

  render() {
    const pill = $("sp-state");
    pill.dataset.state = this.state;
    pill.textContent = STATE_TEXT[this.state] || this.state;
    $("sp-detail").textContent = this.detail;
    const idle = this.state === "off" || this.state === "failed";
    const stored = Boolean(sessionStorage.getItem(KEY.password));
    $("sp-login").hidden = !idle;
    $("sp-password").hidden = stored;  // "Connect again" (e.g. after allowing the microphone) needs no typing
    $("sp-password").required = !stored;
    $("sp-register").textContent = stored ? "Connect again" : "Use this browser as my phone";
    $("sp-disconnect").hidden = idle && !stored;
    const ringing = Boolean(this.session) && this.session.state === SessionState.Initial && !this.pending;
    const up = Boolean(this.session) && this.session.state === SessionState.Established;
    $("sp-call").hidden = !this.session;
    $("sp-answer").hidden = !ringing;
    $("sp-reject").hidden = !ringing;
    $("sp-hangup").hidden = !up;
    $("sp-mute").hidden = !up;
    $("sp-keypad-toggle").hidden = !up;
    if (!up) $("sp-keys").hidden = true;
    $("sp-mute").setAttribute("aria-pressed", String(this.muted));
    $("sp-mute").textContent = this.muted ? "Unmute" : "Mute";
    const card = $("phone-card");
    this.callState = !this.session ? "" : this.pending ? "waiting-for-pop" : up ? "connected" : ringing ? "ringing" : "ending";
    card.dataset.call = this.callState;
    this.onChange(this.state, this.detail);
  }

  setState(state, detail = "") {
    this.state = state;
    this.detail = detail;
    this.render();
  }

  error(message) {
    const node = $("sp-error");
    node.textContent = message || "";
    node.hidden = !message;
  }

  // --- registration -----------------------------------------------------------------------------------

  /** At sign-in (and after a reload): registers again when this tab holds the SIP password. */
  async resume() {
    if (sessionStorage.getItem(KEY.password)) await this.start();
    else this.setState("off", "Type the SIP password your admin gave you to use this browser as your phone.");
  }

  async start() {
    const who = this.login();
    const password = sessionStorage.getItem(KEY.password);
    if (!who || !password) return;
    await this.stop({quiet: true});
    this.stopping = false;
    this.error("");
    this.setState("connecting");
    try {
      this.config = await api(who.token, "GET", `/api/v1/agents/${encodeURIComponent(who.agent)}/webrtc`);
    } catch (err) {
      this.setState("failed", `The desktop could not read the phone settings: ${err.message}`);
      return;
    }
    if (!this.config.enabled) {
      this.setState("failed", this.config.reason || "The browser phone is turned off.");
      return;
    }
    // the microphone first: a phone that cannot answer must not take offers
    try {
      const probe = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
      probe.getTracks().forEach((t) => t.stop());
    } catch (err) {
      const message = explain(err);
      this.error(message);
      this.setState("failed", message);
      return;
    }
    await this.listDevices();
    let UserAgent, Registerer;
    try {
      ({UserAgent, Registerer} = await loadSip());
    } catch (err) {
      this.setState("failed", `The phone library could not be loaded (${err.message}): tell your admin.`);
      return;
    }
    const uri = UserAgent.makeURI(this.config.aor);
    if (!uri) {
      this.setState("failed", `bad address of record ${this.config.aor}`);
      return;
    }
    this.ua = new UserAgent({
      uri,
      transportOptions: {server: this.config.ws_url, connectionTimeout: 5},
      authorizationUsername: this.config.username,
      authorizationPassword: password,
      logBuiltinEnabled: false,
      logLevel: "error",
      userAgentString: "ivr-desktop (SIP.js)",
      sendInitialProvisionalResponse: false, // 180 Ringing only once the pop is painted (ring())
      sessionDescriptionHandlerFactoryOptions: {peerConnectionConfiguration: {iceServers: this.config.ice_servers || []}},
      delegate: {
        onInvite: (invitation) => this.incoming(invitation),
        onDisconnect: (err) => { if (!this.stopping) this.dropped(err); },
      },
    });
    this.registerer = new Registerer(this.ua, {expires: 300});
    this.registerer.stateChange.addListener((state) => {
      if (state === RegistererState.Registered) {
        this.retry.delay = 1;
        this.setState("registered", this.config.aor);
      } else if (state === RegistererState.Unregistered && this.state === "registered") {
        this.setState("unregistered", "The edge ended the registration.");
      }
    });
    try {
      await this.ua.start();
    } catch (err) {
      this.edgeUnreachable(err);
      this.schedule();
      return;
    }
    await this.register();
  }

  edgeUnreachable(err) {
    const message = `The phone edge (${this.config.ws_url}) is unreachable: ${err && err.message ? err.message : "no connection"}. `
      + "Retrying; if it lasts, check the network or tell your admin.";
    this.error(message);
    this.setState("reconnecting", message);
  }

  async register() {
    if (!this.registerer) return;
    await this.registerer.register({requestDelegate: {onAccept: () => {
      // also after a reconnection, when the registerer's own state never left "registered"
      this.retry.delay = 1;
      this.error("");
      this.setState("registered", this.config.aor);
    }, onReject: (response) => {
      const {statusCode, reasonPhrase} = response.message;
      if (statusCode === 401 || statusCode === 403 || statusCode === 407) {
        sessionStorage.removeItem(KEY.password); // wrong: ask again rather than retrying it forever
        const message = `The edge refused the SIP password (${statusCode} ${reasonPhrase}): type it again, or ask your admin for a new one.`;
        this.error(message);
        this.setState("failed", message);
        this.stop({quiet: true});
      } else {
        this.error(`Registration failed: ${statusCode} ${reasonPhrase}`);
        this.setState("failed", `${statusCode} ${reasonPhrase}`);
      }
    }}}).catch((err) => this.setState("failed", explain(err)));
  }

  /** The WebSocket went away (network drop, edge restart): reconnect with back-off, register again. */
  dropped(err) {
    this.edgeUnreachable(err || new Error("connection lost"));
    this.schedule();
  }

  schedule() {
    clearTimeout(this.retry.timer);
    const delay = this.retry.delay;
    this.retry.delay = Math.min(delay * 2, RETRY_MAX_S);
    this.retry.timer = setTimeout(() => this.reconnect(false), delay * 1000);
  }

  async reconnect(now) {
    if (!this.ua || this.stopping) return;
    if (now) clearTimeout(this.retry.timer);
    try {
      await this.ua.reconnect();
    } catch (err) {
      this.edgeUnreachable(err);
      this.schedule();
      return;
    }
    this.error("");
    await this.register();
  }

  /** Unregister and disconnect (sign-out, "Disconnect phone"); forget: drop the password too. */
  async stop({forget = false, quiet = false} = {}) {
    this.stopping = true;
    clearTimeout(this.retry.timer);
    this.dropPending();
    if (forget) sessionStorage.removeItem(KEY.password);
    const ua = this.ua;
    const registerer = this.registerer;
    this.ua = null;
    this.registerer = null;
    if (this.session) this.endSession();
    if (registerer && registerer.state === RegistererState.Registered) {
      try {
        await registerer.unregister();
      } catch {
        // the edge is gone: the registration expires there on its own
      }
    }
    if (ua) {
      try {
        await ua.stop();
      } catch {
        // already down
      }
    }
    if (!quiet) {
      this.error("");
      this.setState("off", forget ? "Disconnected." : "");
    }
  }

  // --- calls ---------------------------------------------------------------------------------------------

  /** The desktop painted the pop of ``callId`` (``who``: the caller it shows): ring the INVITE waiting
   * for it, now. */
  popPainted(callId, who = "") {
    this.painted.set(callId, {at: Date.now(), who: String(who || "")});
    this.popCall = callId;
    while (this.painted.size > 8) this.painted.delete(this.painted.keys().next().value);
    if (this.pending && (!this.pending.callId || this.pending.callId === callId)) this.ring();
  }

  /** The desktop's current ringing pop, if any: what an INVITE without the call header belongs to. */
  set currentPop(callId) {
    this.popCall = callId || null;
  }

  incoming(invitation) {
    if (this.session) {  // one call at a time on this phone
      invitation.reject({statusCode: 486}).catch(() => {});
      return;
    }
    this.session = invitation;
    const callId = (invitation.request.getHeader(CALL_HEADER) || "").trim();
    this.callId = callId;
    invitation.stateChange.addListener((state) => {
      if (state === SessionState.Established) this.connected();
      if (state === SessionState.Terminated) this.ended();
      this.render();
    });
    const ready = callId ? this.painted.has(callId) : Boolean(this.popCall);
    this.pending = {invitation, callId, timer: null};
    if (ready) {
      this.ring();
    } else {
      this.pending.timer = setTimeout(() => this.ring(), POP_WAIT_MS);
      this.render();
    }
  }

  dropPending() {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = null;
  }

  ring() {
    if (!this.pending) return;
    const {invitation} = this.pending;
    this.dropPending();
    if (invitation.state !== SessionState.Initial) return;
    if (!this.callId && this.popCall) this.callId = this.popCall; // no header: the pop it rang with
    invitation.progress().catch(() => {});  // 180 Ringing
    const card = $("phone-card");
    card.dataset.ringAt = String(Date.now()); // for tests: after the pop's data-shown-at
    // the caller the pop shows (the worker's INVITE comes from the hotline itself), else the From
    const from = invitation.request.from;
    const pop = this.painted.get(this.callId);
    $("sp-call-line").textContent = `Ringing: ${(pop && pop.who) || from.displayName || from.uri.user || "unknown"}`;
    this.startRinger();
    this.render();
  }

  constraints() {
    const mic = $("sp-mic").value;
    return {audio: mic ? {deviceId: {exact: mic}} : true, video: false};
  }

  async answer() {
    const session = this.session;
    if (!session || session.state !== SessionState.Initial) return;
    this.stopRinger();
    try {
      await session.accept({sessionDescriptionHandlerOptions: {constraints: this.constraints()}});
    } catch (err) {
      this.error(`Could not answer: ${explain(err)}`);
      session.reject({statusCode: 480}).catch(() => {});
    }
  }

  reject() {
    const session = this.session;
    if (!session || session.state !== SessionState.Initial) return;
    this.stopRinger();
    session.reject({statusCode: 486}).catch(() => {});
  }

  hangup() {
    const session = this.session;
    if (session && session.state === SessionState.Established) session.bye().catch(() => {});
  }

  endSession() {
    const session = this.session;
    if (!session) return;
    if (session.state === SessionState.Established) session.bye().catch(() => {});
    else if (session.state === SessionState.Initial) session.reject().catch(() => {});  // an Invitation
  }

  connected() {
    this.stopRinger();
    this.muted = false;
    const sdh = this.session.sessionDescriptionHandler;
    const audio = $("sp-remote");
    audio.srcObject = sdh.remoteMediaStream;
    this.applySpeaker();
    audio.play().catch(() => {});
    $("sp-call-line").textContent = "On a call";
    this.startMeters(sdh.localMediaStream, sdh.remoteMediaStream);
  }

  ended() {
    this.stopRinger();
    this.stopMeters();
    this.dropPending();
    $("sp-remote").srcObject = null;
    $("sp-call-line").textContent = "";
    this.session = null;
    this.callId = "";
    this.muted = false;
  }

  mute(on) {
    const session = this.session;
    if (!session || session.state !== SessionState.Established) return;
    session.sessionDescriptionHandler.enableSenderTracks(!on);
    this.muted = on;
    if (on) $("sp-in-level").value = 0;  // at once, not at the meter's next tick (100 ms later)
    this.render();
  }

  /** A key to the other side as RFC 4733 telephone-event (the connection's DTMF sender). */
  dtmf(key) {
    const session = this.session;
    if (!session || session.state !== SessionState.Established) return;
    const sent = session.sessionDescriptionHandler.sendDtmf(key, {duration: 160, interToneGap: 70});
    $("sp-keys-sent").textContent = sent ? `${$("sp-keys-sent").textContent}${key}`.slice(-32) : "Keypad not available on this call";
  }

  // --- devices, level meters, ringing -------------------------------------------------------------------

  async listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fillSelect = (select, kind, saved, fallback) => {
      const options = devices.filter((d) => d.kind === kind)
        .map((d, i) => el("option", {value: d.deviceId}, d.label || `${fallback} ${i + 1}`));
      fill(select, ...options);
      if (saved && options.some((o) => o.value === saved)) select.value = saved;
    };
    fillSelect($("sp-mic"), "audioinput", sessionStorage.getItem(KEY.mic), "Microphone");
    const speaker = $("sp-speaker");
    fillSelect(speaker, "audiooutput", sessionStorage.getItem(KEY.speaker), "Speaker");
    speaker.disabled = !("setSinkId" in HTMLMediaElement.prototype);
  }

  applySpeaker() {
    const audio = $("sp-remote");
    const id = $("sp-speaker").value;
    if (id && audio.setSinkId) {
      audio.setSinkId(id).catch((err) => this.error(`Could not use that speaker: ${explain(err)}`));
    }
  }

  startMeters(local, remote) {
    this.stopMeters();
    const ctx = new AudioContext();
    const analyser = (stream) => {
      if (!stream || !stream.getAudioTracks().length) return null;
      const node = ctx.createAnalyser();
      node.fftSize = 512;
      ctx.createMediaStreamSource(stream).connect(node);
      return node;
    };
    const nodes = {in: analyser(local), out: analyser(remote)};
    const buf = new Float32Array(512);
    const level = (node) => {
      if (!node) return 0;
      node.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const v of buf) sum += v * v;
      return Math.min(1, Math.sqrt(sum / buf.length) * 4);
    };
    const step = () => {
      if (!this.meters) return;
      $("sp-in-level").value = this.muted ? 0 : level(nodes.in);
      $("sp-out-level").value = level(nodes.out);
    };
    // ten times a second is smooth enough for a meter; every animation frame cost each agent's
    // browser a repaint 60 times a second for the whole call
    this.meters = {ctx, timer: setInterval(step, METER_MS)};
  }

  stopMeters() {
    if (!this.meters) return;
    clearInterval(this.meters.timer);
    this.meters.ctx.close().catch(() => {});
    this.meters = null;
    $("sp-in-level").value = 0;
    $("sp-out-level").value = 0;
  }

  /** A two-tone ring from WebAudio while the call rings (no sound file: media-src stays 'self'). */
  startRinger() {
    this.stopRinger();
    try {
      const ctx = new AudioContext();
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(ctx.destination);
      for (const f of [440, 480]) {
        const osc = ctx.createOscillator();
        osc.frequency.value = f;
        osc.connect(gain);
        osc.start();
      }
      let on = false;
      const timer = setInterval(() => { on = !on; gain.gain.value = on ? 0.1 : 0; }, 1000);
      this.ringer = {ctx, timer};
    } catch {
      this.ringer = null; // no sound: the card still shows the call ringing
    }
  }

  stopRinger() {
    if (!this.ringer) return;
    clearInterval(this.ringer.timer);
    this.ringer.ctx.close().catch(() => {});
    this.ringer = null;
  }
}

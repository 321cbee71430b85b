// Call alerts for the agent desktop: a ring tone made with WebAudio (no sound file to download) and a
// browser notification when a call pops. Browsers allow both only after the user did something in
// the page: the agent turns them on with a click (``enable``); after a reload the first click or key
// anywhere in the page wakes the sound again. Notifications carry text only (caller, queue).

const RING_HZ = [440, 480]; // the two tones of a classic ring
const BURST_S = 0.4;
const GAP_S = 0.2;
const BURSTS = 2;
const LEVEL = 0.18;

export class CallAlerts {
  constructor() {
    this.ctx = null; // the AudioContext, made on the first gesture
    this.enabled = false; // the agent turned alerts on
    this.shown = new Map(); // call_id -> Notification
    this.onChange = () => {};
    const wake = () => { if (this.enabled) this.unlock(); };
    window.addEventListener("pointerdown", wake, {capture: true});
    window.addEventListener("keydown", wake, {capture: true});
  }

  /** "on", "blocked" (the browser refuses notifications), "asleep" (sound waits for a click) or "off". */
  status() {
    if (!this.enabled) return "off";
    if (this.notifications() === "denied") return "blocked";
    if (!this.ctx || this.ctx.state !== "running") return "asleep";
    return "on";
  }

  notifications() {
    return "Notification" in window ? Notification.permission : "unsupported";
  }

  /** From a click: make or resume the audio context (no await before it: it must stay in the gesture). */
  unlock() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!this.ctx) this.ctx = new Ctx();
    if (this.ctx.state === "suspended") this.ctx.resume().then(() => this.onChange(), () => {});
    this.onChange();
  }

  /** Turn alerts on, from a click: sound at once, and ask for notifications if not asked yet. */
  async enable() {
    this.enabled = true;
    this.unlock();
    if (this.notifications() === "default") {
      try {
        await Notification.requestPermission();
      } catch {
        // an old browser without the promise form: no notifications, the sound still plays
      }
    }
    this.onChange();
  }

  disable() {
    this.enabled = false;
    for (const id of [...this.shown.keys()]) this.clear(id);
    this.onChange();
  }

  /** The alert for a pop: ring, and a notification that brings this tab forward when clicked. */
  pop(call) {
    if (!this.enabled) return [];
    const done = [];
    if (this.ring()) done.push("sound");
    if (this.notify(call)) done.push("notification");
    return done;
  }

  ring() {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== "running") return false;
    const start = ctx.currentTime + 0.02;
    const gain = ctx.createGain();
    gain.gain.setValueAtTime(0, start);
    gain.connect(ctx.destination);
    for (let i = 0; i < BURSTS; i++) {
      const t = start + i * (BURST_S + GAP_S);
      gain.gain.setValueAtTime(0, t);
      gain.gain.linearRampToValueAtTime(LEVEL, t + 0.02); // no click at the edges
      gain.gain.setValueAtTime(LEVEL, t + BURST_S - 0.03);
      gain.gain.linearRampToValueAtTime(0, t + BURST_S);
    }
    const end = start + BURSTS * (BURST_S + GAP_S);
    for (const hz of RING_HZ) {
      const osc = ctx.createOscillator();
      osc.type = "sine";
      osc.frequency.value = hz;
      osc.connect(gain);
      osc.start(start);
      osc.stop(end);
    }
    return true;
  }

  notify(call) {
    if (this.notifications() !== "granted") return false;
    this.clear(call.call_id);
    let note;
    try {
      note = new Notification(`Incoming call from ${call.ani || "unknown"}`, {
        body: [call.queue && `Queue ${call.queue}`, call.transferred_from && `Transferred by ${call.transferred_from}`]
          .filter(Boolean).join(" · "),
        tag: `call-${call.call_id}`, // a second tab's notification replaces this one
        requireInteraction: true,
      });
    } catch {
      return false; // e.g. a browser that only notifies from a service worker
    }
    note.onclick = () => {
      window.focus();
      note.close();
    };
    this.shown.set(call.call_id, note);
    return true;
  }

  /** The call was answered, missed or ended: its notification goes away. */
  clear(callId) {
    const note = this.shown.get(callId);
    if (note) note.close();
    this.shown.delete(callId);
  }
}

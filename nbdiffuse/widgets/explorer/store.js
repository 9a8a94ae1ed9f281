// The Explorer's state in the browser (explorer/*.js; widgets/assets.py concatenates them into one
// module after frame_decode.js and dom.js):
//
// - Store: one per widget (shared by all its views): decoded frames and the live stream. Frames
//   live in the browser: widget state holds one encoded image per step and view, and live frames
//   arrive as paced custom messages. Scrubbing therefore draws decoded bitmaps synchronously, with
//   no kernel round trip, and still works in a saved notebook.
// - ViewState: one per view: the step on screen, whether it follows the run, and its timers.

const VIEWS = ["x0", "xt"]; // the pictures of a step: predicted clean image, noisy latent (frames.VIEWS)
const STORES = new Map(); // widget uid -> Store, shared by all views of one widget
const FULL_KEPT = 64; // full-VAE frames from scrubbing kept per widget (oldest dropped first)

function expand(segments, n) {
  // [[first step, guidance], ...] -> one guidance per step
  const out = new Array(n);
  for (let s = 0; s < segments.length; s++) {
    const [from, w] = segments[s];
    const to = s + 1 < segments.length ? segments[s + 1][0] : n;
    for (let k = from; k < Math.min(to, n); k++) out[k] = w;
  }
  return out;
}

function base64Bytes(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function segmentsOf(values) {
  const out = [];
  values.forEach((w, k) => {
    if (!out.length || out[out.length - 1][1] !== w) out.push([k, w]);
  });
  return out;
}

class Store extends EventTarget {
  constructor(model) {
    super();
    this.model = model;
    this.lists = { x0: [], xt: [] };
    this.tokens = { x0: null, xt: null };
    this.fullState = new Map(); // "k:view" from the full_frames trait
    this.fullMsgs = new Map(); // "run:k:view" from scrub replies
    this.resetLive();
    model.on("change:run_id", () => { this.resetLive(); this.emit("reset"); });
    model.on("change:frames_x0", () => this.loadList("x0"));
    model.on("change:frames_xt", () => this.loadList("xt"));
    model.on("change:full_frames", () => this.loadFull());
    model.on("msg:custom", (msg, buffers) => this.onMessage(msg, buffers || []));
    this.loadList("x0");
    this.loadList("xt");
    this.loadFull();
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  resetLive() {
    this.run = this.model.get("run_id");
    this.live = new Map();
    this.liveKinds = new Map(); // k -> what drew the live frame (frames.FRAME_DECODERS)
    this.liveN = 0;
    this.liveTotal = 0;
    this.liveIts = 0;
    this.liveSegments = null;
    this.liveControl = null; // a ControlNet run's strength per step (control.js)
    this.liveOverlays = new Map(); // k -> {bytes, scale}: a live frame's word maps (overlays.js)
    this.liveGuidance = new Map(); // k -> {bytes, top}, or null where step k ran without guidance
    this.liveWords = []; // the words those maps are of, and their grid [h, w]
    this.liveGrid = [0, 0];
    this.newest = -1;
  }

  send(content, buffers) {
    try {
      this.model.send(content, undefined, buffers);
      return true;
    } catch (err) {
      return false; // restored from a saved notebook: no kernel behind this widget
    }
  }

  loadList(view) {
    const bufs = this.model.get("frames_" + view) || [];
    const token = {};
    this.tokens[view] = token;
    const out = new Array(bufs.length);
    this.lists[view] = out;
    bufs.forEach((buf, k) => {
      decodeFrame(buf).then((bmp) => {
        if (this.tokens[view] !== token) return;
        out[k] = bmp;
        this.emit("frames", { k, view });
      }, () => {});
    });
  }

  loadFull() {
    const full = this.model.get("full_frames") || {};
    const token = {};
    this.fullToken = token;
    this.fullState = new Map();
    for (const [key, buf] of Object.entries(full)) {
      decodeFrame(buf).then((bmp) => {
        if (this.fullToken !== token) return;
        this.fullState.set(key, bmp);
        this.emit("frames", { k: Number(key.split(":")[0]), view: key.split(":")[1] });
      }, () => {});
    }
  }

  async onMessage(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "frame") {
      let bitmaps = null;
      try {
        bitmaps = await Promise.all(buffers.map(decodeFrame));
      } catch (err) { /* a frame that does not decode is skipped; the final state repairs it */ }
      if (bitmaps && msg.run === this.run) {
        this.live.set(msg.k, bitmaps);
        this.liveKinds.set(msg.k, msg.decoder || "approx");
        this.liveN = Math.max(this.liveN, msg.n);
        this.liveTotal = msg.total;
        this.liveIts = msg.its;
        this.liveSegments = msg.g;
        if (msg.cs) this.liveControl = msg.cs;
        if (msg.om) {
          this.liveOverlays.set(msg.k, { bytes: base64Bytes(msg.om), scale: msg.os || [] });
          this.liveWords = msg.ow || [];
          this.liveGrid = msg.og || [0, 0];
        }
        if (typeof msg.gm === "string") {
          this.liveGuidance.set(msg.k, msg.gm ? { bytes: base64Bytes(msg.gm), top: msg.gs } : null);
          this.liveGrid = msg.og || [0, 0];
        }
        this.newest = Math.max(this.newest, msg.k);
        this.emit("live", { k: msg.k });
      }
      // Acknowledge once the frame could be painted: the kernel sends the next one only then.
      requestAnimationFrame(() => this.send({ type: "ack", run: msg.run, seq: msg.seq }));
    } else if (msg.type === "full") {
      let bitmaps;
      try { bitmaps = await Promise.all(buffers.map(decodeFrame)); } catch (err) { return; }
      (msg.views || VIEWS).forEach((view, i) => { if (bitmaps[i]) this.fullMsgs.set(`${msg.run}:${msg.k}:${view}`, bitmaps[i]); });
      while (this.fullMsgs.size > FULL_KEPT) this.fullMsgs.delete(this.fullMsgs.keys().next().value);
      this.emit("frames", { k: msg.k });
    } else if (msg.type === "download") {
      this.emit("download", { msg, buffer: buffers[0] });
    } else if (msg.type === "whatif") {
      let bmp = null;
      try { bmp = await decodeFrame(buffers[0]); } catch (err) { return; }
      if (!bmp) return;
      this.emit("whatif", { msg, bmp });
    }
  }

  get count() {
    const live = this.model.get("run_id") === this.run ? this.liveN : 0;
    return Math.max(this.model.get("n_steps"), live);
  }

  get total() {
    return this.model.get("total_steps") || this.liveTotal;
  }

  guidances() {
    const n = this.count;
    const saved = this.model.get("guidances") || [];
    if (saved.length >= n || !this.liveSegments) return saved.slice(0, n);
    return expand(this.liveSegments, n);
  }

  // The best picture of step k: full VAE, else the state frame, else a live frame, else the
  // nearest earlier step that has one (live frames may be sparse).
  frameAt(k, view) {
    return this.pictureAt(k, view).bmp;
  }

  // The word maps (kind "words") or guidance map ("guidance") of step k while its run goes: the nearest
  // earlier live frame's, as for pictures; null where there is none (or that frame's step had none).
  liveOverlayAt(k, kind = "words") {
    if (this.model.get("run_id") !== this.run) return null;
    const maps = kind === "guidance" ? this.liveGuidance : this.liveOverlays;
    for (let j = k; j >= 0; j--) {
      if (maps.has(j)) return maps.get(j);
    }
    return null;
  }

  // Whether the run shown is going (its live frames stand in for the state it has not sent yet).
  get going() {
    return this.model.get("run_id") === this.run && ["running", "pausing", "paused"].includes(this.model.get("status"));
  }

  // {bmp, kind}: kind says what drew it ("full", or what drew the run's frames: saved, tiny, approx).
  pictureAt(k, view) {
    const i = VIEWS.indexOf(view);
    const full = this.fullMsgs.get(`${this.model.get("run_id")}:${k}:${view}`) || this.fullState.get(`${k}:${view}`);
    if (full) return { bmp: full, kind: "full" };
    for (let j = k; j >= 0; j--) {
      const saved = this.lists[view][j];
      if (saved) return { bmp: saved, kind: this.model.get("frames_decoder") || "approx" };
      const live = this.live.get(j);
      if (live) return { bmp: live[i], kind: this.liveKinds.get(j) };
    }
    return { bmp: null, kind: null };
  }
}

function storeFor(model) {
  const uid = model.get("_uid");
  let store = STORES.get(uid);
  if (!store) {
    store = new Store(model);
    STORES.set(uid, store);
  }
  return store;
}

// Named timers of one view, in one place: starting one cancels the earlier timer of that name,
// and dispose() ends them all when the view goes.
class Timers {
  constructor() {
    this.ids = new Map(); // name -> timeout or interval id (one pool: clearTimeout ends either)
  }

  // Run fn once after ms.
  later(name, ms, fn) {
    this.cancel(name);
    const id = setTimeout(() => {
      if (this.ids.get(name) === id) this.ids.delete(name);
      fn();
    }, ms);
    this.ids.set(name, id);
  }

  // Run fn every ms until cancelled.
  every(name, ms, fn) {
    this.cancel(name);
    this.ids.set(name, setInterval(fn, ms));
  }

  cancel(name) {
    if (!this.ids.has(name)) return;
    clearTimeout(this.ids.get(name));
    clearInterval(this.ids.get(name));
    this.ids.delete(name);
  }

  active(name) {
    return this.ids.has(name);
  }

  dispose() {
    for (const name of [...this.ids.keys()]) this.cancel(name);
  }
}

// The mutable state of one view (a widget may be shown twice), shared by its parts: the step on
// screen, whether it follows the newest step while a run goes, and its timers ("save": a control
// change on its way to the kernel; "kernel": no answer yet; "scrub": the scrubber at rest asks for
// the full VAE's frame; "play": playback; "whatif": a what-if drag at rest).
class ViewState {
  constructor(model) {
    this.shown = -1; // step on screen
    this.follow = model.get("frame") < 0; // stick to the newest step while a run goes
    this.timers = new Timers();
  }

  get playing() {
    return this.timers.active("play");
  }
}

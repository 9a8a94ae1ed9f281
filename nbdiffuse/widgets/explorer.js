// nbdiffuse Explorer front end (anywidget ES module).
// widgets/assets.py puts frame_decode.js (decodeFrame, asDataView, mimeOf) before it.
//
// Frames live in the browser: widget state holds one encoded image per step and view, and
// live frames arrive as paced custom messages. Scrubbing therefore draws decoded bitmaps
// synchronously, with no kernel round trip, and still works in a saved notebook.

const VIEWS = ["x0", "xt"];
const STORES = new Map(); // widget uid -> Store, shared by all views of one widget
const PLAY_FPS = 12;
const SCRUB_SETTLE_MS = 200; // ask the kernel for a full-VAE frame once the scrubber rests
const KERNEL_QUIET_MS = 6000;
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

function segmentsOf(values) {
  const out = [];
  values.forEach((w, k) => {
    if (!out.length || out[out.length - 1][1] !== w) out.push([k, w]);
  });
  return out;
}

// --- the model-level store: decoded frames and the live stream ------------------------
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

// --- DOM helpers -------------------------------------------------------------------------
function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function field(label, input, cls = "") {
  return h("label", { class: "nbd-field " + cls }, [h("span", { class: "nbd-label", text: label }), input]);
}

const STATUS_TEXT = {
  pausing: "pausing after this step…",
  paused: "paused",
  stopped: "stopped",
  error: "failed",
};

// --- the view ----------------------------------------------------------------------------
// A quiet tag on a frame that is not the VAE's own picture: the tiny decoder's or the approx map's.
const KIND_TAGS = {
  approx: ["approx", "Approximate colours at the latent size (a fast linear map); the VAE's picture comes when the run ends, pauses or the scrubber rests"],
  tiny: ["tiny decoder", "Drawn by the model's tiny decoder, distilled from its VAE; the VAE's own picture comes when the run ends, pauses or the scrubber rests"],
};
function markKind(tag, kind) {
  const known = KIND_TAGS[kind];
  tag.hidden = !known;
  if (!known) return;
  tag.textContent = known[0];
  tag.title = known[1];
  tag.dataset.kind = kind;
}

function render({ model, el }) {
  const store = storeFor(model);
  const ui = {};
  ui.prompt = h("input", { type: "text", "aria-label": "Prompt", placeholder: "describe the picture" });
  ui.negative = h("input", { type: "text", "aria-label": "Negative prompt", placeholder: "what to avoid (optional)" });
  ui.seed = h("input", { type: "number", min: "0", step: "1", "aria-label": "Seed" });
  ui.dice = h("button", { type: "button", class: "nbd-icon", "aria-label": "Random seed", title: "Random seed", text: "⚄" });
  ui.steps = h("input", { type: "number", min: "1", max: "1000", step: "1", "aria-label": "Steps" });
  ui.scheduler = h("select", { "aria-label": "Scheduler" });
  ui.width = h("select", { "aria-label": "Width" });
  ui.height = h("select", { "aria-label": "Height" });
  ui.guidance = h("input", { type: "range", min: "0", step: "0.1", "aria-label": "Guidance" });
  ui.guidanceOut = h("output", { class: "nbd-gvalue", "aria-live": "off" });
  ui.generate = h("button", { type: "button", class: "nbd-primary", text: "Generate", "aria-label": "Generate" });
  ui.stop = h("button", { type: "button", text: "Stop", "aria-label": "Stop" });
  ui.pause = h("button", { type: "button", text: "Pause", "aria-label": "Pause" });
  ui.step = h("button", { type: "button", text: "Step", "aria-label": "Step once", title: "Run one step while paused" });
  ui.views = {};
  const viewGroup = h("div", { class: "nbd-views", role: "group", "aria-label": "Show" });
  for (const [mode, label] of [["both", "both"], ["x0", "x₀"], ["xt", "xₜ"]]) {
    ui.views[mode] = h("button", { type: "button", "data-mode": mode, text: label, "aria-label": `Show ${mode}` });
    viewGroup.append(ui.views[mode]);
  }
  ui.panes = {};
  ui.canvases = {};
  ui.kinds = {};
  const stage = h("div", { class: "nbd-stage", tabindex: "0", "aria-label": "Frames; arrow keys, Home and End scrub" });
  for (const [view, caption] of [["x0", "predicted clean image x₀"], ["xt", "noisy latent xₜ"]]) {
    ui.canvases[view] = h("canvas", { class: "nbd-frame", role: "img", "aria-label": caption, "data-view": view });
    ui.kinds[view] = h("span", { class: "nbd-kind", hidden: "" });
    ui.panes[view] = h("figure", { class: "nbd-pane", "data-view": view }, [ui.canvases[view], ui.kinds[view], h("figcaption", { text: caption })]);
    stage.append(ui.panes[view]);
  }
  ui.fill = h("div", { class: "nbd-fill" });
  ui.bar = h("div", { class: "nbd-bar", role: "progressbar", "aria-label": "Progress", "aria-valuemin": "0" }, [ui.fill]);
  ui.count = h("span", { class: "nbd-count", "aria-live": "polite", title: "it/s: steps per second of wall time since Generate, time paused left out" });
  ui.play = h("button", { type: "button", class: "nbd-icon nbd-play", "aria-label": "Play", title: "Play", text: "▶" });
  ui.slider = h("input", { type: "range", class: "nbd-slider", min: "0", max: "0", step: "1", value: "0", "aria-label": "Step" });
  ui.strip = svg("svg", { class: "nbd-gstrip", role: "img", "aria-label": "Guidance used per step", preserveAspectRatio: "none" });
  ui.at = h("span", { class: "nbd-at" });
  ui.gtext = h("div", { class: "nbd-gtext" });
  ui.errorText = h("p", { class: "nbd-error-text" });
  ui.errorDetails = h("pre");
  ui.error = h("div", { class: "nbd-error", role: "alert" }, [ui.errorText, h("details", {}, [h("summary", { text: "details" }), ui.errorDetails])]);
  ui.note = h("div", { class: "nbd-note", "aria-live": "polite" });
  ui.inputs = new InputProblems(); // number fields holding a refused value (explorer_parts.js)
  const notes = runNotes(model);
  ui.model = h("span", { class: "nbd-model" });
  // Image to image: a start picture (uploaded here, or set from Python: ex.start_from / ex.sketch_pad).
  ui.file = h("input", { type: "file", accept: "image/*", hidden: "", "aria-label": "Picture file" });
  ui.upload = h("button", { type: "button", text: "Start from a picture…", "aria-label": "Upload a start picture",
                           title: "Image to image: the picture is noised to the strength below, then denoised" });
  ui.thumb = h("img", { class: "nbd-startpic", alt: "start picture" });
  ui.usePicture = h("input", { type: "checkbox", "aria-label": "Use the start picture" });
  ui.strength = h("input", { type: "range", min: "0.05", max: "1", step: "0.05", "aria-label": "Strength" });
  ui.strengthOut = h("output", { class: "nbd-gvalue" });
  ui.clearPicture = h("button", { type: "button", class: "nbd-icon", text: "×", "aria-label": "Remove the start picture" });
  ui.pictureRow = h("div", { class: "nbd-row nbd-picture" }, [
    ui.upload, ui.file,
    ui.pictureControls = h("span", { class: "nbd-picture-controls" }, [
      ui.thumb,
      h("label", { class: "nbd-check" }, [ui.usePicture, h("span", { text: "use" })]),
      field("Strength", h("span", { class: "nbd-grange" }, [ui.strength, ui.strengthOut])),
      ui.clearPicture,
    ]),
  ]);

  const root = h("div", { class: "nbd-explorer", role: "region", "aria-label": "nbdiffuse Explorer" }, [
    h("div", { class: "nbd-controls" }, [
      field("Prompt", ui.prompt, "nbd-wide"),
      field("Negative prompt", ui.negative, "nbd-wide"),
      h("div", { class: "nbd-row" }, [
        h("div", { class: "nbd-seed" }, [field("Seed", ui.seed), ui.dice]),
        field("Steps", ui.steps, "nbd-narrow"),
        field("Scheduler", ui.scheduler),
        ui.sizeField = h("div", { class: "nbd-size" }, [field("Width", ui.width), field("Height", ui.height)]),
      ]),
      h("div", { class: "nbd-row" }, [field("Guidance", h("span", { class: "nbd-grange" }, [ui.guidance, ui.guidanceOut]), "nbd-wide")]),
      notes.guidance,
      ui.pictureRow,
      h("div", { class: "nbd-row nbd-buttons" }, [ui.generate, ui.stop, ui.pause, ui.step, h("span", { class: "nbd-spacer" }), viewGroup]),
      ui.inputs.node,
      notes.notices,
    ]),
    stage,
    h("div", { class: "nbd-progress" }, [ui.bar, ui.count]),
    h("div", { class: "nbd-scrub" }, [ui.play, h("div", { class: "nbd-track" }, [ui.slider, ui.strip]), ui.at]),
    ui.gtext,
    ui.explore = h("div", { class: "nbd-explore" }),
    ui.error,
    ui.note,
    h("div", { class: "nbd-footer" }, [ui.model]),
  ]);
  el.append(root);
  // Lumino (JupyterLab, Notebook 7) matches shortcuts from the focused element up and stops at
  // this attribute; Notebook 7 listens in the capture phase, where stopPropagation comes too late.
  // Only the keyboard-driven controls carry it, so Ctrl+S and the like still work on the rest.
  for (const node of [ui.prompt, ui.negative, ui.seed, ui.steps, ui.guidance, ui.slider, stage, ui.play]) {
    node.setAttribute("data-lm-suppress-shortcuts", "true");
  }

  // --- talking to the kernel ---
  let kernelTimer = null;
  let saveTimer = null;
  function save() {
    clearTimeout(saveTimer);
    saveTimer = null;
    try {
      model.save_changes();
      return true;
    } catch (err) {
      return false;
    }
  }
  function saveSoon() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(save, 250);
  }
  function command(type) {
    if (type === "generate" && ui.inputs.refuse("Generate")) return;
    const ok = save() && store.send({ type });
    clearTimeout(kernelTimer);
    if (!ok) {
      note("No kernel is connected to this widget (a saved notebook?): scrub the saved frames, or run the cell again to generate.");
      return;
    }
    kernelTimer = setTimeout(() => note("No answer from the kernel yet: it may be busy running another cell, or no kernel is behind this saved widget (run the cell again)."), KERNEL_QUIET_MS);
  }
  function heard() {
    clearTimeout(kernelTimer);
    note("");
  }
  function note(text) {
    ui.note.textContent = text;
    ui.note.hidden = !text;
  }

  // --- controls <-> traits ---
  function bindText(input, name) {
    input.value = model.get(name);
    input.addEventListener("input", () => { model.set(name, input.value); saveSoon(); });
    model.on(`change:${name}`, () => { if (input.value !== model.get(name)) input.value = model.get(name); });
  }
  function bindSelect(select, name, optionsName, label = (v) => String(v)) {
    const fill = () => {
      select.replaceChildren(...(model.get(optionsName) || []).map((v) => h("option", { value: String(v), text: label(v) })));
      select.value = String(model.get(name));
    };
    fill();
    select.addEventListener("change", () => {
      const current = model.get(name);
      model.set(name, typeof current === "number" ? Number(select.value) : select.value);
      save();
    });
    model.on(`change:${optionsName}`, fill);
    model.on(`change:${name}`, () => { select.value = String(model.get(name)); });
  }
  bindText(ui.prompt, "prompt");
  bindText(ui.negative, "negative_prompt");
  bindInt(model, ui.seed, "seed", "Seed", ui.inputs, save);
  bindInt(model, ui.steps, "steps", "Steps", ui.inputs, save);
  bindSelect(ui.scheduler, "scheduler", "scheduler_options");
  bindSelect(ui.width, "width", "size_options");
  bindSelect(ui.height, "height", "size_options");

  let guidanceSent = 0;
  function showGuidance() {
    ui.guidance.max = String(model.get("guidance_max"));
    ui.guidance.value = String(model.get("guidance"));
    ui.guidanceOut.textContent = Number(model.get("guidance")).toFixed(1);
  }
  showGuidance();
  ui.guidance.addEventListener("input", () => {
    const value = Number(ui.guidance.value);
    ui.guidanceOut.textContent = value.toFixed(1);
    model.set("guidance", value);
    // During a run each change steers the next step: send at most ~10 per second while dragging.
    const now = performance.now();
    if (now - guidanceSent > 100) { guidanceSent = now; save(); } else saveSoon();
  });
  ui.guidance.addEventListener("change", save);
  model.on("change:guidance", showGuidance);
  model.on("change:guidance_max", showGuidance);

  // --- the start picture ---
  function showPicture() {
    const bytes = model.get("start_thumb");
    const has = !!(bytes && bytes.byteLength);
    ui.pictureControls.hidden = !has;
    ui.upload.textContent = has ? "Other picture…" : "Start from a picture…";
    if (has) {
      const old = ui.thumb.src;
      const view = asDataView(bytes);
      ui.thumb.src = URL.createObjectURL(new Blob([view], { type: mimeOf(view) }));
      if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
    }
    ui.usePicture.checked = !!model.get("use_picture");
    ui.strength.value = String(model.get("strength"));
    ui.strengthOut.textContent = Number(model.get("strength")).toFixed(2);
    root.classList.toggle("nbd-img2img", has && !!model.get("use_picture"));
  }
  showPicture();
  ui.upload.addEventListener("click", () => ui.file.click());
  ui.file.addEventListener("change", async () => {
    const file = ui.file.files && ui.file.files[0];
    ui.file.value = "";
    if (!file) return;
    const buffer = await file.arrayBuffer();
    if (!(save() && store.send({ type: "upload", name: file.name }, [buffer]))) {
      note("No kernel is connected to this widget: run the cell again to upload a picture.");
    }
  });
  ui.usePicture.addEventListener("change", () => { model.set("use_picture", ui.usePicture.checked); save(); });
  ui.strength.addEventListener("input", () => {
    ui.strengthOut.textContent = Number(ui.strength.value).toFixed(2);
    model.set("strength", Number(ui.strength.value));
    saveSoon();
  });
  ui.clearPicture.addEventListener("click", () => command("clear_picture"));
  for (const name of ["start_thumb", "use_picture", "strength"]) model.on(`change:${name}`, showPicture);

  ui.dice.addEventListener("click", () => {
    model.set("seed", Math.floor(Math.random() * 2 ** 32));
    save();
  });
  ui.prompt.addEventListener("keydown", (e) => { if (e.key === "Enter") command("generate"); });
  ui.generate.addEventListener("click", () => command("generate"));
  ui.stop.addEventListener("click", () => command("stop"));
  ui.pause.addEventListener("click", () => command(["paused", "pausing"].includes(model.get("status")) ? "resume" : "pause"));
  ui.step.addEventListener("click", () => command("step"));
  for (const [mode, button] of Object.entries(ui.views)) {
    button.addEventListener("click", () => { model.set("view", mode); save(); layoutViews(); });
  }

  // --- frames and scrubbing ---
  let shown = -1; // step on screen
  let follow = model.get("frame") < 0; // stick to the newest step while a run goes
  let scrubTimer = null;
  let playTimer = null;

  function hasX0() {
    return (model.get("capabilities") || {}).x0 !== false;
  }
  function viewMode() {
    // A pipeline that gives only x_t (capabilities.x0 false): the x_t view alone, whatever was chosen.
    return hasX0() ? model.get("view") : "xt";
  }
  function visibleViews() {
    const mode = viewMode();
    return mode === "both" ? VIEWS : [mode];
  }
  function layoutViews() {
    const mode = viewMode();
    for (const m of ["both", "x0"]) {
      ui.views[m].disabled = !hasX0();
      ui.views[m].title = hasX0() ? "" : (model.get("capabilities_note") || "this pipeline gives only x_t");
    }
    for (const view of VIEWS) ui.panes[view].hidden = !visibleViews().includes(view);
    for (const [m, button] of Object.entries(ui.views)) button.setAttribute("aria-pressed", String(m === mode));
    root.classList.toggle("nbd-single", mode !== "both");
    paint(shown);
  }
  function sizeCanvases() {
    const [w, hgt] = model.get("image_size") || [0, 0];
    for (const canvas of Object.values(ui.canvases)) {
      canvas.style.aspectRatio = w && hgt ? `${w} / ${hgt}` : "1 / 1";
    }
  }
  function draw(canvas, bmp) {
    if (canvas.width !== bmp.width || canvas.height !== bmp.height) {
      canvas.width = bmp.width;
      canvas.height = bmp.height;
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, bmp.width, bmp.height);
    ctx.drawImage(bmp, 0, 0);
    // Small pictures (latent-resolution previews, the 64x64 embedded model) upscale crisply.
    canvas.classList.toggle("nbd-pixelated", bmp.width <= 256);
  }
  function paint(k) {
    const n = store.count;
    if (n === 0 || k < 0) return;
    k = Math.min(k, n - 1);
    shown = k;
    for (const view of visibleViews()) {
      const { bmp, kind } = store.pictureAt(k, view);
      if (bmp) draw(ui.canvases[view], bmp);
      markKind(ui.kinds[view], bmp ? kind : null);
      ui.canvases[view].setAttribute("aria-label", `${view === "x0" ? "predicted clean image x0" : "noisy latent xt"}, step ${k + 1}`);
    }
    ui.slider.value = String(k);
    root.dispatchEvent(new CustomEvent("nbd-shown", { detail: { k } }));
    const total = Math.max(store.total, n); // planned steps, as the progress line counts them
    ui.at.textContent = `${k + 1} / ${total}`;
    ui.slider.setAttribute("aria-valuetext", `step ${k + 1} of ${total}`);
  }
  function showStep(k, fromUser) {
    const n = store.count;
    if (n === 0) return;
    k = Math.max(0, Math.min(n - 1, k));
    if (fromUser) {
      root.dispatchEvent(new CustomEvent("nbd-scrubbed", { detail: { k } }));
      follow = k === n - 1;
      model.set("frame", follow ? -1 : k); // kept in the saved state; no kernel needed
      clearTimeout(scrubTimer);
      scrubTimer = setTimeout(() => requestFull(k), SCRUB_SETTLE_MS);
    }
    paint(k);
  }
  function requestFull(k) {
    if (["running", "pausing"].includes(model.get("status"))) return;
    save();
    store.send({ type: "scrub", run: model.get("run_id"), k });
  }
  function stopPlaying() {
    clearInterval(playTimer);
    playTimer = null;
    ui.play.textContent = "▶";
    ui.play.setAttribute("aria-label", "Play");
  }
  ui.play.addEventListener("click", () => {
    if (playTimer) return stopPlaying();
    const n = store.count;
    if (n < 2) return;
    if (shown >= n - 1) showStep(0, true);
    ui.play.textContent = "❚❚";
    ui.play.setAttribute("aria-label", "Pause playback");
    playTimer = setInterval(() => {
      if (shown >= store.count - 1) return stopPlaying();
      showStep(shown + 1, true);
    }, 1000 / PLAY_FPS);
  });
  ui.slider.addEventListener("input", () => { stopPlaying(); showStep(Number(ui.slider.value), true); });

  const KEYS = { ArrowLeft: -1, ArrowRight: 1, ArrowDown: -1, ArrowUp: 1 };
  root.addEventListener("keydown", (e) => {
    // JupyterLab takes arrow keys (and command-mode letters such as "a", "b", "d") from the page
    // unless the widget keeps them; chords (Ctrl+S, Alt+...) still reach it.
    if (!(e.ctrlKey || e.metaKey || e.altKey || (e.shiftKey && e.key === "Enter"))) e.stopPropagation();
    if (e.target !== stage && e.target !== ui.play) return; // the slider moves natively
    const n = store.count;
    let k = null;
    if (e.key in KEYS) k = shown + KEYS[e.key];
    else if (e.key === "Home") k = 0;
    else if (e.key === "End") k = n - 1;
    if (k === null || n === 0) return;
    e.preventDefault();
    stopPlaying();
    showStep(k, true);
  });

  // --- status, progress, guidance strip ---
  function updateStatus() {
    const status = model.get("status");
    const busy = ["running", "pausing", "paused"].includes(status);
    ui.stop.disabled = !busy;
    ui.pause.disabled = !busy || status === "pausing";
    ui.pause.textContent = status === "paused" ? "Resume" : "Pause";
    ui.pause.setAttribute("aria-label", ui.pause.textContent);
    ui.step.disabled = status !== "paused";
    // Guidance that cannot change mid-run (pipelines watched through their step callback) waits for Generate.
    const liveGuidance = (model.get("capabilities") || {}).live_guidance !== false;
    ui.guidance.disabled = busy && !liveGuidance;
    ui.guidance.title = busy && !liveGuidance ? (model.get("capabilities_note") || "") : "";
    root.dataset.status = status;
    const error = model.get("error");
    ui.error.hidden = !error;
    ui.errorText.textContent = error;
    ui.errorDetails.textContent = model.get("error_details");
    ui.errorDetails.parentElement.hidden = !model.get("error_details");
    ui.sizeField.hidden = !(model.get("size_options") || []).length;
    ui.model.textContent = model.get("model_label");
    updateProgress();
  }
  function updateProgress() {
    const status = model.get("status");
    const n = store.count;
    const total = store.total;
    ui.bar.setAttribute("aria-valuemax", String(total));
    ui.bar.setAttribute("aria-valuenow", String(n));
    ui.fill.style.width = total ? `${(100 * n) / total}%` : "0%";
    const live = status === "running" || status === "pausing";
    const its = live && store.liveIts ? store.liveIts : model.get("its");
    ui.count.textContent = progressText(status, n, total, its, model.get("seconds"));
    const max = Math.max(0, n - 1);
    if (ui.slider.max !== String(max)) ui.slider.max = String(max);
    ui.slider.disabled = n === 0;
    ui.play.disabled = n < 2;
    drawStrip();
  }
  let stripKey = "";
  function drawStrip() {
    const values = store.guidances();
    const segments = segmentsOf(values);
    const key = `${JSON.stringify(segments)}|${values.length}`;
    if (key === stripKey) return;
    stripKey = key;
    // The x axis is the slider's (0 .. n-1, the strip inset by half a thumb), so the bar of step k
    // is centred under slider position k. Heights are scaled to the largest value used, so that a
    // change from 7.5 to 6 still shows.
    const top = Math.max(...values, 1) * 1.05;
    ui.strip.setAttribute("viewBox", `0 0 ${Math.max(values.length - 1, 1)} 1`);
    ui.strip.replaceChildren();
    segments.forEach(([from, w], s) => {
      const to = s + 1 < segments.length ? segments[s + 1][0] : values.length;
      const height = Math.max(0.08, w / top);
      const rect = svg("rect", { x: from - 0.5, y: 1 - height, width: to - from, height, class: s ? "nbd-gchanged" : "", "data-g": w, "data-from": from, "data-to": to });
      const title = svg("title");
      title.textContent = `steps ${from + 1}–${to}: guidance ${w}`;
      rect.append(title);
      ui.strip.append(rect);
    });
    ui.strip.dataset.guidances = JSON.stringify(segments);
    ui.gtext.textContent = segments.length
      ? "guidance " + segments.map(([from, w], s) => `${w} from step ${from + 1}`).join(" → ")
      : "";
    ui.gtext.hidden = segments.length < 2;
  }

  // --- events from the store and the model ---
  const onLive = () => {
    heard();
    updateProgress();
    if (follow && !playTimer) paint(store.newest);
  };
  const onFrames = (e) => {
    if (shown < 0 || follow || e.detail.k === shown) paint(follow ? store.count - 1 : shown);
  };
  const onReset = () => {
    follow = true;
    stopPlaying();
    stripKey = "";
    updateProgress();
  };
  store.addEventListener("live", onLive);
  store.addEventListener("frames", onFrames);
  store.addEventListener("reset", onReset);
  model.on("change:status", () => { heard(); updateStatus(); if (follow) paint(store.count - 1); });
  model.on("change:error", () => { heard(); updateStatus(); });
  model.on("change:error_details", updateStatus);
  model.on("change:n_steps", () => { updateProgress(); if (follow) paint(store.count - 1); });
  model.on("change:guidances", updateProgress);
  model.on("change:size_options", updateStatus);
  model.on("change:image_size", sizeCanvases);
  model.on("change:view", layoutViews);
  model.on("change:capabilities", () => { layoutViews(); updateStatus(); });
  model.on("change:frame", () => { if (model.get("frame") < 0 && !follow) { follow = true; paint(store.count - 1); } });

  const explore = renderExplore({ model, store, root, ui, draw, command, save, shownStep: () => shown, repaint: () => paint(shown) });

  sizeCanvases();
  updateStatus();
  layoutViews();
  const start = model.get("frame");
  paint(start >= 0 ? start : store.count - 1);

  return () => {
    explore();
    notes.dispose();
    stopPlaying();
    clearTimeout(scrubTimer);
    clearTimeout(kernelTimer);
    clearTimeout(saveTimer);
    store.removeEventListener("live", onLive);
    store.removeEventListener("frames", onFrames);
    store.removeEventListener("reset", onReset);
  };
}

// --- exploring: what-if guidance, branches, the run tree, compare, exports ---------------
function decodeAll(bufs) {
  return Promise.all((bufs || []).map((b) => decodeFrame(b).catch(() => null)));
}

function renderExplore({ model, store, root, ui, draw, command, save, shownStep, repaint }) {
  const send = (content) => {
    save();
    if (!store.send(content)) ui.note.textContent = "No kernel is connected to this widget: run the cell again to explore.";
  };
  const busy = () => ["running", "pausing"].includes(model.get("status"));

  // What-if guidance: the shown step's x0 re-weighed with another guidance (no model call).
  const whatif = {
    slider: h("input", { type: "range", min: "0", step: "0.1", "aria-label": "What-if guidance" }),
    out: h("output", { class: "nbd-gvalue" }),
    cont: h("button", { type: "button", text: "Continue from here", "aria-label": "Continue from here", title: "Branch the run from the shown step with this guidance" }),
    branch: h("button", { type: "button", text: "Branch here", "aria-label": "Branch here", title: "Continue from the shown step with the controls above (prompt, guidance, scheduler, seed)" }),
    reset: h("button", { type: "button", class: "nbd-icon", text: "↺", "aria-label": "Back to the guidance used", title: "Back to the guidance used" }),
  };
  const badge = h("span", { class: "nbd-badge", hidden: "" });
  ui.panes.x0.append(badge);
  let active = false; // the x0 pane shows a what-if picture
  let lastSent = 0;
  let holdTimer = null;
  function usedAt(k) {
    const g = store.guidances();
    return g.length ? g[Math.max(0, Math.min(k, g.length - 1))] : model.get("guidance");
  }
  function clearWhatIf() {
    active = false;
    badge.hidden = true;
    root.classList.remove("nbd-whatif");
  }
  function syncSlider() {
    whatif.slider.max = String(model.get("guidance_max"));
    if (!active) {
      const w = Number(usedAt(shownStep()) ?? 0);
      whatif.slider.value = String(w);
      whatif.out.textContent = w.toFixed(1);
    }
  }
  function requestWhatIf(decoder) {
    const k = shownStep();
    if (k < 0 || busy()) return;
    send({ type: "whatif", run: model.get("run_id"), k, g: Number(whatif.slider.value), decoder });
  }
  whatif.slider.addEventListener("input", () => {
    active = true;
    whatif.out.textContent = Number(whatif.slider.value).toFixed(1);
    const now = performance.now();
    // Approx frames cost a few ms in the kernel: send at most ~30 per second while dragging.
    if (now - lastSent > 33) { lastSent = now; requestWhatIf("approx"); }
    clearTimeout(holdTimer);
    holdTimer = setTimeout(() => requestWhatIf("approx"), 40);
  });
  whatif.slider.addEventListener("change", () => { clearTimeout(holdTimer); requestWhatIf("approx"); if (model.get("has_pipe")) requestWhatIf("full"); });
  whatif.reset.addEventListener("click", () => { clearWhatIf(); syncSlider(); repaint(); });
  whatif.cont.addEventListener("click", () => { send({ type: "continue", k: shownStep(), g: Number(whatif.slider.value) }); clearWhatIf(); });
  whatif.branch.addEventListener("click", () => { if (ui.inputs.refuse("Branch here")) return; send({ type: "branch", k: shownStep() }); clearWhatIf(); });
  const onWhatIf = (e) => {
    const { msg, bmp } = e.detail;
    if (!active || msg.run !== model.get("run_id") || msg.k !== shownStep()) return;
    if (Math.abs(msg.g - Number(whatif.slider.value)) > 1e-6 && msg.decoder === "full") return;
    draw(ui.canvases.x0, bmp);
    badge.textContent = `what if guidance ${Number(msg.g).toFixed(1)}${msg.decoder === "full" ? "" : msg.decoder === "tiny" ? " (tiny decoder)" : " (approx)"}`;
    badge.hidden = false;
    root.classList.add("nbd-whatif");
  };
  store.addEventListener("whatif", onWhatIf);
  root.addEventListener("nbd-scrubbed", () => { clearWhatIf(); });
  root.addEventListener("nbd-shown", () => { if (!active) syncSlider(); });
  [whatif.slider].forEach((n) => n.setAttribute("data-lm-suppress-shortcuts", "true"));

  // Exports (explorer_parts.js).
  const exp = exportControls({ model, store, send, save, shownStep });

  // The run tree and compare pickers.
  const tree = {
    list: h("ol", { class: "nbd-tree", "aria-label": "Runs" }),
    a: h("select", { "aria-label": "Compare run A" }),
    b: h("select", { "aria-label": "Compare run B" }),
    go: h("button", { type: "button", text: "Compare", "aria-label": "Compare" }),
    summary: h("summary", { text: "Runs" }),
  };
  tree.go.addEventListener("click", () => send({ type: "compare", a: tree.a.value, b: tree.b.value }));
  let picked = false;
  for (const select of [tree.a, tree.b]) select.addEventListener("change", () => {
    picked = true;
    if (!cmp.panel.hidden) tree.go.click(); // an open comparison follows its pickers
  });
  let thumbURLs = [];
  function drawTree() {
    const nodes = model.get("runs") || [];
    const thumbs = model.get("run_thumbs") || [];
    thumbURLs.forEach((u) => URL.revokeObjectURL(u));
    thumbURLs = [];
    const shownId = model.get("shown_run");
    const dropped = model.get("runs_dropped") || 0;  // older runs let go of (Explorer max_runs)
    tree.summary.textContent = `Runs (${nodes.length})` + (dropped ? ` · ${dropped} older dropped` : "");
    tree.list.replaceChildren(...nodes.map((node) => {
      const img = h("img", { class: "nbd-thumb", alt: "" });
      const buf = thumbs[node.index];
      if (buf && buf.byteLength) {
        const view = asDataView(buf);
        const url = URL.createObjectURL(new Blob([view], { type: mimeOf(view) }));
        thumbURLs.push(url);
        img.src = url;
      }
      const steps = node.steps < node.total ? `${node.steps}/${node.total} steps, stopped` : `${node.total} steps`;
      const button = h("button", { type: "button", class: "nbd-node", "data-run": node.id, "aria-current": String(node.id === shownId),
        title: node.settings || node.prompt, "aria-label": `Load run ${node.label}` }, [
        img, h("span", { class: "nbd-node-text" }, [h("b", { text: node.label }), " ", h("span", { text: node.changed }), h("small", { text: steps })]),
      ]);
      button.addEventListener("click", () => send({ type: "load_run", id: node.id }));
      const item = h("li", { "data-depth": String(node.depth) }, [button]);
      item.style.paddingLeft = `${Math.min(node.depth, 6) * 16}px`;
      return item;
    }));
    const options = () => nodes.map((n) => h("option", { value: n.id, text: `${n.label} ${n.changed}` }));
    const keepA = tree.a.value, keepB = tree.b.value;
    tree.a.replaceChildren(...options());
    tree.b.replaceChildren(...options());
    const ids = nodes.map((n) => n.id);
    // Default pair: the shown run and its parent (a branch and where it came from), else the last two.
    const shownNode = nodes.find((n) => n.id === shownId);
    const defaultB = shownNode ? shownNode.id : ids[ids.length - 1];
    const others = ids.filter((id) => id !== defaultB);
    const defaultA = shownNode && shownNode.parent && ids.includes(shownNode.parent) ? shownNode.parent : others[others.length - 1];
    // Keep the user's own pick; otherwise follow the shown run as the tree grows.
    tree.a.value = picked && ids.includes(keepA) ? keepA : defaultA || "";
    tree.b.value = picked && ids.includes(keepB) ? keepB : defaultB || "";
    syncPickers(tree, model.get("comparison"));
    tree.go.disabled = nodes.length < 2;
  }

  // Compare view: two runs and their difference under one scrubber.
  const cmp = {
    canvases: { a: h("canvas", { class: "nbd-frame nbd-pixelated", role: "img", "aria-label": "Run A" }),
      b: h("canvas", { class: "nbd-frame nbd-pixelated", role: "img", "aria-label": "Run B" }),
      heat: h("canvas", { class: "nbd-frame nbd-pixelated", role: "img", "aria-label": "Difference heatmap" }) },
    caps: { a: h("figcaption"), b: h("figcaption"), heat: h("figcaption", { text: "difference |A − B|" }) },
    slider: h("input", { type: "range", class: "nbd-cslider", min: "0", max: "0", step: "1", value: "0", "aria-label": "Compare step" }),
    at: h("span", { class: "nbd-cat" }),
    curve: svg("svg", { class: "nbd-curve", role: "img", "aria-label": "Difference per step", preserveAspectRatio: "none", viewBox: "0 0 100 30" }),
    text: h("div", { class: "nbd-gtext" }),
    close: h("button", { type: "button", class: "nbd-icon", text: "✕", "aria-label": "Close compare", title: "Close compare" }),
    bitmaps: { a: [], b: [], heat: [] },
  };
  cmp.slider.setAttribute("data-lm-suppress-shortcuts", "true");
  cmp.panel = h("section", { class: "nbd-compare", "aria-label": "Compare runs", hidden: "" }, [
    h("div", { class: "nbd-compare-head" }, [h("b", { text: "Compare" }), h("span", { class: "nbd-spacer" }), cmp.close]),
    h("div", { class: "nbd-stage nbd-compare-stage" }, ["a", "b", "heat"].map((key) =>
      h("figure", { class: "nbd-pane", "data-compare": key }, [cmp.canvases[key], cmp.caps[key]]))),
    h("div", { class: "nbd-scrub" }, [h("div", { class: "nbd-track" }, [cmp.slider]), cmp.at]),
    cmp.curve,
    cmp.text,
  ]);
  cmp.close.addEventListener("click", () => send({ type: "compare_close" }));
  let cmpToken = null;
  function paintCompare() {
    const info = model.get("comparison") || {};
    const i = Number(cmp.slider.value);
    const pairs = info.pairs || [];
    for (const key of ["a", "b", "heat"]) {
      const bmp = cmp.bitmaps[key][i];
      if (bmp) draw(cmp.canvases[key], bmp);
    }
    if (pairs[i]) cmp.at.textContent = `${i + 1} / ${pairs.length}`;
    const marker = cmp.curve.querySelector(".nbd-curve-at");
    if (marker && pairs.length) marker.setAttribute("x1", String((100 * i) / Math.max(1, pairs.length - 1))), marker.setAttribute("x2", marker.getAttribute("x1"));
  }
  function loadCompare() {
    const info = model.get("comparison") || {};
    const pairs = info.pairs || [];
    cmp.panel.hidden = !pairs.length;
    if (!pairs.length) return;
    captionCompare(cmp.caps.a, info, "a");
    captionCompare(cmp.caps.b, info, "b");
    syncPickers(tree, info);
    cmp.slider.max = String(pairs.length - 1);
    cmp.slider.value = String(pairs.length - 1);
    const diff = info.difference || [];
    const top = Math.max(...diff, 1e-6);
    const x = (i) => (100 * i) / Math.max(1, diff.length - 1);
    const points = diff.map((d, i) => `${x(i).toFixed(2)},${(29 - (27 * d) / top).toFixed(2)}`).join(" ");
    cmp.curve.replaceChildren(
      svg("polyline", { points, class: "nbd-curve-line", "vector-effect": "non-scaling-stroke" }),
      svg("line", { x1: x(info.locks_in_at), x2: x(info.locks_in_at), y1: 0, y2: 30, class: "nbd-curve-lock", "vector-effect": "non-scaling-stroke" }),
      svg("line", { x1: 100, x2: 100, y1: 0, y2: 30, class: "nbd-curve-at", "vector-effect": "non-scaling-stroke" }),
    );
    cmp.curve.dataset.difference = JSON.stringify(diff);
    const of = info.view === "xt" ? "xₜ" : "x₀";
    cmp.text.textContent = `difference per step (mean |A − B| of ${of}); the composition locks in at step ${info.locks_in_at + 1} of ${pairs.length}`;
    cmp.caps.heat.textContent = `difference |A − B| of ${of}`;
    const token = {};
    cmpToken = token;
    Promise.all([decodeAll(model.get("compare_a")), decodeAll(model.get("compare_b")), decodeAll(model.get("compare_heat"))])
      .then(([a, b, heat]) => {
        if (cmpToken !== token) return;
        cmp.bitmaps = { a, b, heat };
        paintCompare();
      });
  }
  cmp.slider.addEventListener("input", paintCompare);
  cmp.slider.addEventListener("keydown", (e) => e.stopPropagation());

  // Layout.
  ui.workshop = h("div", { class: "nbd-workshop", role: "note" });
  ui.capNote = h("div", { class: "nbd-workshop nbd-capnote", role: "note", hidden: "" });
  ui.explore.append(
    ui.workshop,
    ui.capNote,
    h("div", { class: "nbd-row nbd-whatif-row" }, [
      h("label", { class: "nbd-field nbd-wide" }, [h("span", { class: "nbd-label", text: "What if guidance at the shown step (no model call)" }),
        h("span", { class: "nbd-grange" }, [whatif.slider, whatif.out, whatif.reset])]),
    ]),
    h("div", { class: "nbd-row nbd-buttons" }, [whatif.cont, whatif.branch]),
    h("details", { class: "nbd-runs", open: "" }, [tree.summary, tree.list,
      h("div", { class: "nbd-row nbd-pick" }, [field("A", tree.a), field("B", tree.b), tree.go])]),
    cmp.panel,
    h("details", { class: "nbd-export" }, [h("summary", { text: "Export" }),
      h("div", { class: "nbd-row" }, [exp.kindRow, field("from step", exp.from, "nbd-narrow"), field("to step", exp.to, "nbd-narrow")]),
      exp.problems.node,
      h("div", { class: "nbd-row" }, [field("into folder", exp.dir, "nbd-wide")]),
      exp.where.node,
      exp.files]),
  );

  function updateAvailability() {
    const hasPipe = model.get("has_pipe");
    const n = store.count;
    const idle = !busy() && n > 0;
    const caps = model.get("capabilities") || {};
    const capNote = model.get("capabilities_note") || "";
    const canWhatIf = caps.what_if !== false;
    const canBranch = caps.branch !== false;
    whatif.slider.disabled = !idle || !canWhatIf;
    whatif.cont.disabled = !idle || !hasPipe || !canBranch || !canWhatIf;
    whatif.branch.disabled = !idle || !hasPipe || !canBranch;
    whatif.slider.title = canWhatIf ? "" : capNote;
    for (const b of [whatif.cont, whatif.branch]) {
      if (!hasPipe) b.title = "Needs the model: this Explorer shows saved runs only";
      else if (!canBranch) b.title = capNote;
    }
    ui.capNote.textContent = capNote;
    ui.capNote.hidden = !capNote;
    needsModel([ui.generate, ui.upload], hasPipe);
    for (const [kind, b] of Object.entries(exp.kinds)) b.disabled = n === 0 || (kind === "mp4" && !model.get("mp4"));
    if (!model.get("mp4")) exp.kinds.mp4.title = "MP4 export needs imageio-ffmpeg: pip install imageio-ffmpeg";
    if (!busy()) followRun(exp, n);
    const note = model.get("workshop_note");
    ui.workshop.textContent = note;
    ui.workshop.hidden = !note;
  }
  function drawFiles() {
    const files = model.get("export_files") || [];
    drawExportFiles(exp.files, files, model.get("export_dir"), (path) => {
      if (!exp.downloads.request(path)) Object.assign(ui.note, { textContent: `No kernel is connected to this widget: the file is at ${path}`, hidden: false });
    });
    if (files.length) exp.files.parentElement.open = true;
  }

  const handlers = [
    ["change:runs", drawTree], ["change:runs_dropped", drawTree], ["change:run_thumbs", drawTree], ["change:shown_run", drawTree],
    ["change:comparison", loadCompare], ["change:compare_a", loadCompare], ["change:compare_heat", loadCompare],
    ["change:status", () => { if (busy()) clearWhatIf(); updateAvailability(); }],
    ["change:n_steps", updateAvailability], ["change:has_pipe", updateAvailability], ["change:mp4", updateAvailability],
    ["change:workshop_note", updateAvailability], ["change:export_files", drawFiles],
    ["change:capabilities", updateAvailability], ["change:capabilities_note", updateAvailability],
    ["change:export_dir", () => { exp.dir.value = model.get("export_dir"); }],
    ["change:guidances", syncSlider], ["change:guidance_max", syncSlider],
    ["change:run_id", () => { clearWhatIf(); exp.typed = false; updateAvailability(); }],
  ];
  for (const [event, fn] of handlers) model.on(event, fn);
  drawTree();
  loadCompare();
  drawFiles();
  updateAvailability();
  syncSlider();
  return () => {
    clearTimeout(holdTimer);
    store.removeEventListener("whatif", onWhatIf);
    for (const [event, fn] of handlers) model.off(event, fn);
    thumbURLs.forEach((u) => URL.revokeObjectURL(u));
    exp.where.dispose();
    exp.downloads.dispose();
  };
}

function initialize({ model, signal }) {
  // One store per widget, made before any view so that live frames are acknowledged even
  // when no view is on screen (the kernel's pacing would otherwise wait for timeouts).
  const uid = model.get("_uid");
  STORES.delete(uid); // a re-initialized model (new front-end code) starts afresh
  storeFor(model);
  if (signal) signal.addEventListener("abort", () => STORES.delete(uid));
}

export default { initialize, render };

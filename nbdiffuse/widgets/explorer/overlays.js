// Overlays on the x0 frame: a word's attention map or the guidance map of the step shown (overlays.py
// sends them as bytes per step over the latent grid). Hover a word of the prompt to see its map, click
// it to keep it; scrubbing repaints the overlay for each step. "attention maps" makes Generate record them;
// while a run goes, its live frames carry their step's word maps and guidance map (store.js liveOverlayAt).

// A dark-blue -> teal -> green -> yellow ramp: readable over light and dark pages alike.
const OVERLAY_RAMP = [[20, 30, 90], [40, 120, 180], [90, 190, 120], [250, 230, 60]];

function rampColour(v) {
  const x = Math.max(0, Math.min(1, v)) * (OVERLAY_RAMP.length - 1);
  const i = Math.min(Math.floor(x), OVERLAY_RAMP.length - 2);
  const f = x - i;
  return OVERLAY_RAMP[i].map((c, j) => Math.round(c + f * (OVERLAY_RAMP[i + 1][j] - c)));
}

function overlayBytes(buf) {
  const view = asDataView(buf);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

// One map (bytes over an h x w grid, 0..255) as a small canvas: colour from the ramp, more opaque where higher.
function mapCanvas(bytes, h, w, offset) {
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = bytes[offset + i] / 255;
    const [r, g, b] = rampColour(v);
    image.data.set([r, g, b, Math.round(255 * (0.08 + 0.62 * v))], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
  return small;
}

// An inpainting run's mask as a small canvas: the part the model repaints tinted as the mask pad tints it.
function maskCanvas(bytes, h, w) {
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const ctx = small.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) image.data.set(bytes[i] ? [236, 64, 122, 120] : [0, 0, 0, 0], 4 * i);
  ctx.putImageData(image, 0, 0);
  return small;
}

function overlayNodes() {
  const ui = {};
  ui.record = h("input", { type: "checkbox", class: "nbd-attn-toggle", "aria-label": "Record attention maps" });
  ui.words = h("span", { class: "nbd-overlay-words", role: "group", "aria-label": "Overlay a word's attention map" });
  ui.guidance = h("button", { type: "button", class: "nbd-chip", "data-overlay": "guidance", "aria-pressed": "false", text: "guidance", title: "Where the prompt acts at this step: how far apart the x0 with and without the prompt are" });
  ui.mask = h("button", { type: "button", class: "nbd-chip", "data-overlay": "mask", "aria-pressed": "false", text: "mask", hidden: "", title: "The part of the picture the model repaints (white in the mask)" });
  ui.legend = h("canvas", { class: "nbd-legend", width: "96", height: "10", "aria-hidden": "true" });
  ui.legendText = h("span", { class: "nbd-legend-text" });
  ui.note = h("span", { class: "nbd-overlay-note" });
  ui.canvas = h("canvas", { class: "nbd-overlay-canvas", hidden: "", role: "img", "aria-label": "overlay" });
  ui.row = h("div", { class: "nbd-overlay" }, [
    h("label", { class: "nbd-attn", title: "Record each word's attention at every step on the next Generate" }, [ui.record, " attention maps"]),
    h("span", { class: "nbd-label", text: "overlay:" }), ui.guidance, ui.mask, ui.words,
    h("span", { class: "nbd-legend-box" }, [ui.legend, ui.legendText]), ui.note,
  ]);
  const legend = ui.legend.getContext("2d");
  for (let x = 0; x < 96; x++) {
    const [r, g, b] = rampColour(x / 95);
    legend.fillStyle = `rgb(${r},${g},${b})`;
    legend.fillRect(x, 0, 1, 10);
  }
  return ui;
}

class Overlays {
  constructor({ model, store, root, stage, ui }) {
    Object.assign(this, { model, store, root, stage, pane: ui.panes.x0, frame: ui.canvases.x0 });
    this.ui = overlayNodes();
    this.pinned = null; // "guidance", a word index, or null
    this.hovered = null;
    this.pane.append(this.ui.canvas);
  }

  shown() {
    return this.hovered !== null ? this.hovered : this.pinned;
  }

  // The shown run's words: its state's, or while it goes the words its live frames carry maps of.
  words() {
    const saved = this.model.get("overlay_words") || [];
    return saved.length ? saved : this.store.liveOverlayAt(this.store.newest) ? this.store.liveWords : [];
  }

  // The word chips of the shown run's prompt (none when it was traced without maps).
  buildWords() {
    const words = this.words();
    this.chipWords = words.join("\u0000");
    this.ui.words.replaceChildren(...words.map((word, i) => {
      const chip = h("button", { type: "button", class: "nbd-chip", "data-word": String(i), "aria-pressed": "false", text: word });
      chip.addEventListener("mouseenter", () => { this.hovered = i; this.paint(); });
      chip.addEventListener("mouseleave", () => { this.hovered = null; this.paint(); });
      chip.addEventListener("click", () => this.pin(i));
      return chip;
    }));
    if (typeof this.pinned === "number" && this.pinned >= words.length) this.pinned = null;
    this.chipGuidance = this.hasGuidance();
    this.ui.guidance.disabled = !this.chipGuidance; // a kept guidance overlay stays kept: it shows again with the maps
    this.ui.mask.hidden = !this.hasMask();
    this.ui.note.textContent = words.length ? this.model.get("overlay_note") || "" :
      (!this.model.get("attention_available") ? "attention maps need a model family nbdiffuse runs itself"
        : this.model.get("attention") ? "maps come with the next run" : "tick “attention maps” and Generate to see where each word acts");
    this.paint();
  }

  hasMask() {
    const bytes = this.model.get("mask_map");
    return !!(bytes && bytes.byteLength);
  }

  // Whether the shown run has guidance maps: in its state, or while it goes, in its live frames.
  hasGuidance() {
    if ((this.model.get("guidance_maps") || []).length) return true;
    return this.store.going && [...this.store.liveGuidance.values()].some((map) => map);
  }

  pin(what) {
    this.pinned = this.pinned === what ? null : what;
    this.paint();
  }

  // Paint the overlay of the step shown; hide it when none is chosen or the step has none.
  paint() {
    const { ui } = this;
    const what = this.shown();
    for (const chip of [ui.guidance, ui.mask, ...ui.words.children]) {
      const mine = chip.dataset.overlay || Number(chip.dataset.word);
      chip.setAttribute("aria-pressed", String(mine === this.pinned && !chip.disabled));
    }
    const k = this.stage.state.shown;
    const map = what === null || k < 0 ? null : this.mapOf(what, k);
    const hidden = !map;
    ui.canvas.hidden = hidden;
    this.root.dataset.overlay = hidden ? "" : String(typeof what === "string" ? what : map.words[what]);
    if (hidden) { ui.legendText.textContent = ""; ui.legend.hidden = false; return; }
    const { bytes, gh, gw, top, words } = map;
    const offset = typeof what === "string" ? 0 : what * gh * gw;
    const small = what === "mask" ? maskCanvas(bytes, gh, gw) : mapCanvas(bytes, gh, gw, offset);
    ui.legend.hidden = what === "mask"; // a mask has no scale
    const { width, height } = this.frame;
    ui.canvas.width = width || gw;
    ui.canvas.height = height || gh;
    const f = this.frame; // lie exactly on the frame (inside its border)
    Object.assign(ui.canvas.style, { left: `${f.offsetLeft + f.clientLeft}px`, top: `${f.offsetTop + f.clientTop}px`,
      width: `${f.clientWidth}px`, height: `${f.clientHeight}px` });
    const ctx = ui.canvas.getContext("2d");
    ctx.imageSmoothingEnabled = what !== "mask"; // a mask's edge stays where it is
    ctx.clearRect(0, 0, ui.canvas.width, ui.canvas.height);
    ctx.drawImage(small, 0, 0, ui.canvas.width, ui.canvas.height);
    ui.legendText.textContent = what === "mask" ? `mask: the part the model repaints, step ${k + 1}` : what === "guidance"
      ? `guidance: 0 – ${Number(top).toPrecision(3)}, step ${k + 1}`
      : `attention to “${words[what]}”: 0 – ${Number(top).toPrecision(3)}, step ${k + 1}`;
    ui.canvas.setAttribute("aria-label", ui.legendText.textContent);
  }

  // The map `what` ("guidance" or a word index) of step k: {bytes, gh, gw, top, words}, from the run's state,
  // else (a word, while the run goes) from its live frames; null where there is none.
  mapOf(what, k) {
    const { model } = this;
    if (what === "mask") { // the same at every step
      const [mh, mw] = model.get("mask_grid") || [0, 0];
      return this.hasMask() && mh && mw ? { bytes: overlayBytes(model.get("mask_map")), gh: mh, gw: mw, words: [] } : null;
    }
    const source = what === "guidance" ? model.get("guidance_maps") || [] : model.get("overlay_maps") || [];
    const [gh, gw] = model.get("overlay_grid") || [0, 0];
    if (k < source.length && gh && gw) {
      const top = what === "guidance" ? model.get("guidance_scale") : (model.get("overlay_scale") || [])[what];
      return { bytes: overlayBytes(source[k]), gh, gw, top, words: model.get("overlay_words") || [] };
    }
    const [lh, lw] = this.store.liveGrid;
    if (source.length || !lh || !lw) return null;
    if (what === "guidance") {
      const live = this.store.going ? this.store.liveOverlayAt(k, "guidance") : null;
      return live ? { bytes: live.bytes, gh: lh, gw: lw, top: live.top, words: [] } : null;
    }
    const live = this.store.liveOverlayAt(k);
    if (!live || what >= this.store.liveWords.length) return null;
    return { bytes: live.bytes, gh: lh, gw: lw, top: live.scale[what], words: this.store.liveWords };
  }

  bind() {
    const { model, ui } = this;
    ui.record.checked = model.get("attention");
    ui.record.addEventListener("change", () => { model.set("attention", ui.record.checked); model.save_changes(); this.buildWords(); });
    ui.guidance.addEventListener("mouseenter", () => { if (!ui.guidance.disabled) { this.hovered = "guidance"; this.paint(); } });
    ui.guidance.addEventListener("mouseleave", () => { this.hovered = null; this.paint(); });
    ui.guidance.addEventListener("click", () => this.pin("guidance"));
    ui.mask.addEventListener("mouseenter", () => { this.hovered = "mask"; this.paint(); });
    ui.mask.addEventListener("mouseleave", () => { this.hovered = null; this.paint(); });
    ui.mask.addEventListener("click", () => this.pin("mask"));
    const onShown = () => this.paint();
    this.root.addEventListener("nbd-shown", onShown);
    // a live frame with maps: the chips of its words appear with the first, the overlay follows the run
    const onLive = () => (this.words().join("\u0000") !== this.chipWords || this.hasGuidance() !== this.chipGuidance
      ? this.buildWords() : this.paint());
    this.store.addEventListener("live", onLive);
    this.store.addEventListener("reset", onLive);
    const rebuild = () => this.buildWords();
    const names = ["overlay_words", "overlay_maps", "guidance_maps", "overlay_grid", "overlay_note", "mask_map"];
    for (const name of names) model.on(`change:${name}`, rebuild);
    const onRecord = () => {
      ui.record.checked = model.get("attention");
      ui.record.disabled = !model.get("attention_available"); // a pipeline that runs its own loop: no maps
      this.buildWords();
    };
    onRecord();
    model.on("change:attention", onRecord);
    model.on("change:attention_available", onRecord);
    // the run ended: its state's guidance maps, or none (its note says why), take over from the live ones
    const onStatus = () => (this.hasGuidance() !== this.chipGuidance ? this.buildWords() : this.paint());
    model.on("change:status", onStatus);
    this.buildWords();
    return () => {
      this.root.removeEventListener("nbd-shown", onShown);
      this.store.removeEventListener("live", onLive);
      this.store.removeEventListener("reset", onLive);
      for (const name of names) model.off(`change:${name}`, rebuild);
      model.off("change:attention", onRecord);
      model.off("change:attention_available", onRecord);
      model.off("change:status", onStatus);
    };
  }
}

// The overlay row (put under the scrubber) and its canvas over the x0 frame, and the decision curve under
// the scrubber (decision.js); returns the dispose function.
function renderOverlays({ model, store, root, stage, ui, scrub, link }) {
  const overlays = new Overlays({ model, store, root, stage, ui });
  const decision = new DecisionView({ model, store, ui });
  overlays.ui.row.append(decision.ui.button);
  scrub.after(overlays.ui.row);
  const disposers = [overlays.bind(), decision.bind(link)];
  return () => disposers.forEach((dispose) => dispose());
}

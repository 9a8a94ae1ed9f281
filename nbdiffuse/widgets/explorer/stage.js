// The stage: the step's pictures (x0 and xt), the progress line, the scrubber with its guidance
// strip, and playback. What it paints comes from the Store; where it is (the step shown, whether it
// follows the run, the scrub and play timers) from the view's ViewState.

const PLAY_FPS = 12;
const SCRUB_SETTLE_MS = 200; // ask the kernel for a full-VAE frame once the scrubber rests
const SCRUB_KEYS = { ArrowLeft: -1, ArrowRight: 1, ArrowDown: -1, ArrowUp: 1 };

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

// The stage's nodes (ui.stage, ui.canvases, ui.slider, ...), added to `ui`.
function stageNodes(ui) {
  ui.panes = {};
  ui.canvases = {};
  ui.kinds = {};
  ui.stage = h("div", { class: "nbd-stage", tabindex: "0", "aria-label": "Frames; arrow keys, Home and End scrub" });
  for (const [view, caption] of [["x0", "predicted clean image x₀"], ["xt", "noisy latent xₜ"]]) {
    ui.canvases[view] = h("canvas", { class: "nbd-frame", role: "img", "aria-label": caption, "data-view": view });
    ui.kinds[view] = h("span", { class: "nbd-kind", hidden: "" });
    ui.panes[view] = h("figure", { class: "nbd-pane", "data-view": view }, [ui.canvases[view], ui.kinds[view], h("figcaption", { text: caption })]);
    ui.stage.append(ui.panes[view]);
  }
  ui.fill = h("div", { class: "nbd-fill" });
  ui.bar = h("div", { class: "nbd-bar", role: "progressbar", "aria-label": "Progress", "aria-valuemin": "0" }, [ui.fill]);
  ui.count = h("span", { class: "nbd-count", "aria-live": "polite", title: "it/s: steps per second of wall time since Generate, time paused left out" });
  ui.play = h("button", { type: "button", class: "nbd-icon nbd-play", "aria-label": "Play", title: "Play", text: "▶" });
  ui.slider = h("input", { type: "range", class: "nbd-slider", min: "0", max: "0", step: "1", value: "0", "aria-label": "Step" });
  ui.strip = svg("svg", { class: "nbd-gstrip", role: "img", "aria-label": "Guidance used per step", preserveAspectRatio: "none" });
  ui.at = h("span", { class: "nbd-at" });
  ui.gtext = h("div", { class: "nbd-gtext" });
  return ui;
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

class Stage {
  constructor({ model, store, state, ui, root, link }) {
    Object.assign(this, { model, store, state, ui, root, link });
    this.stripKey = ""; // what the guidance strip shows, so that it is redrawn only when that changes
  }

  hasX0() {
    return (this.model.get("capabilities") || {}).x0 !== false;
  }

  viewMode() {
    // A pipeline that gives only x_t (capabilities.x0 false): the x_t view alone, whatever was chosen.
    return this.hasX0() ? this.model.get("view") : "xt";
  }

  visibleViews() {
    const mode = this.viewMode();
    return mode === "both" ? VIEWS : [mode];
  }

  layoutViews() {
    const { ui, model } = this;
    const mode = this.viewMode();
    for (const m of ["both", "x0"]) {
      ui.views[m].disabled = !this.hasX0();
      ui.views[m].title = this.hasX0() ? "" : (model.get("capabilities_note") || "this pipeline gives only x_t");
    }
    for (const view of VIEWS) ui.panes[view].hidden = !this.visibleViews().includes(view);
    for (const [m, button] of Object.entries(ui.views)) button.setAttribute("aria-pressed", String(m === mode));
    this.root.classList.toggle("nbd-single", mode !== "both");
    this.paint(this.state.shown);
  }

  sizeCanvases() {
    const [w, hgt] = this.model.get("image_size") || [0, 0];
    for (const canvas of Object.values(this.ui.canvases)) {
      canvas.style.aspectRatio = w && hgt ? `${w} / ${hgt}` : "1 / 1";
    }
  }

  paint(k) {
    const { ui, store } = this;
    const n = store.count;
    if (n === 0 || k < 0) return;
    k = Math.min(k, n - 1);
    this.state.shown = k;
    for (const view of this.visibleViews()) {
      const { bmp, kind } = store.pictureAt(k, view);
      if (bmp) draw(ui.canvases[view], bmp);
      markKind(ui.kinds[view], bmp ? kind : null);
      ui.canvases[view].setAttribute("aria-label", `${view === "x0" ? "predicted clean image x0" : "noisy latent xt"}, step ${k + 1}`);
    }
    ui.slider.value = String(k);
    this.root.dispatchEvent(new CustomEvent("nbd-shown", { detail: { k } }));
    const total = Math.max(store.total, n); // planned steps, as the progress line counts them
    ui.at.textContent = `${k + 1} / ${total}`;
    ui.slider.setAttribute("aria-valuetext", `step ${k + 1} of ${total}`);
  }

  // Paint the step shown again (its best picture may have changed).
  repaint() {
    this.paint(this.state.shown);
  }

  showStep(k, fromUser) {
    const n = this.store.count;
    if (n === 0) return;
    k = Math.max(0, Math.min(n - 1, k));
    if (fromUser) {
      this.root.dispatchEvent(new CustomEvent("nbd-scrubbed", { detail: { k } }));
      this.state.follow = k === n - 1;
      this.model.set("frame", this.state.follow ? -1 : k); // kept in the saved state; no kernel needed
      this.state.timers.later("scrub", SCRUB_SETTLE_MS, () => this.requestFull(k));
    }
    this.paint(k);
  }

  requestFull(k) {
    if (["running", "pausing"].includes(this.model.get("status"))) return;
    this.link.save();
    this.store.send({ type: "scrub", run: this.model.get("run_id"), k });
  }

  stopPlaying() {
    this.state.timers.cancel("play");
    this.ui.play.textContent = "▶";
    this.ui.play.setAttribute("aria-label", "Play");
  }

  togglePlay() {
    if (this.state.playing) return this.stopPlaying();
    const n = this.store.count;
    if (n < 2) return;
    if (this.state.shown >= n - 1) this.showStep(0, true);
    this.ui.play.textContent = "❚❚";
    this.ui.play.setAttribute("aria-label", "Pause playback");
    this.state.timers.every("play", 1000 / PLAY_FPS, () => {
      if (this.state.shown >= this.store.count - 1) return this.stopPlaying();
      this.showStep(this.state.shown + 1, true);
    });
  }

  onKey(e) {
    // JupyterLab takes arrow keys (and command-mode letters such as "a", "b", "d") from the page
    // unless the widget keeps them; chords (Ctrl+S, Alt+...) still reach it.
    if (!(e.ctrlKey || e.metaKey || e.altKey || (e.shiftKey && e.key === "Enter"))) e.stopPropagation();
    if (e.target !== this.ui.stage && e.target !== this.ui.play) return; // the slider moves natively
    const n = this.store.count;
    let k = null;
    if (e.key in SCRUB_KEYS) k = this.state.shown + SCRUB_KEYS[e.key];
    else if (e.key === "Home") k = 0;
    else if (e.key === "End") k = n - 1;
    if (k === null || n === 0) return;
    e.preventDefault();
    this.stopPlaying();
    this.showStep(k, true);
  }

  bindScrubbing() {
    this.ui.play.addEventListener("click", () => this.togglePlay());
    this.ui.slider.addEventListener("input", () => { this.stopPlaying(); this.showStep(Number(this.ui.slider.value), true); });
    this.root.addEventListener("keydown", (e) => this.onKey(e));
  }

  updateProgress() {
    const { ui, store, model } = this;
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
    this.drawStrip();
  }

  drawStrip() {
    const { ui } = this;
    const values = this.store.guidances();
    const segments = segmentsOf(values);
    const key = `${JSON.stringify(segments)}|${values.length}`;
    if (key === this.stripKey) return;
    this.stripKey = key;
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

  // A new run (store "reset"): follow it from its first step.
  reset() {
    this.state.follow = true;
    this.stopPlaying();
    this.stripKey = "";
    this.updateProgress();
  }

  // Follow the run to its newest step, when following.
  followNewest() {
    if (this.state.follow) this.paint(this.store.count - 1);
  }
}

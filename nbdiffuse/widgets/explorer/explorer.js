// nbdiffuse Explorer front end (anywidget ES module): render and initialize.
// widgets/assets.py puts before this file frame_decode.js (decodeFrame, asDataView, mimeOf), dom.js
// (h, svg) and the Explorer's parts, each a few named functions or classes:
//   store.js    Store (one per widget: decoded frames, the live stream), ViewState and Timers (one per view)
//   kernel.js   KernelLink: saving control values, commands, the note when no kernel answers
//   fields.js   number fields that say what they refuse, the progress line, notes from traits
//   controls.js the controls and their traits, the run's status on them
//   control.js  a ControlNet's picture, scale and window, its strength strip, "No control from here"
//   stage.js    Stage: the pictures, progress, scrubber, guidance strip and playback
//   overlays.js a word's attention map or the guidance map over the x0 frame (Overlays)
//   decision.js the decision curve under the scrubber, on demand (DecisionView)
//   exports.js  the export row and downloads
//   runs.js     the run tree and the compare view
//   explore.js  what-if guidance, and the explore panel that holds it, the runs panel and exports

// The view's nodes, arranged: controls, stage, progress, scrubber, explore panel, messages.
function layout(ui, notes) {
  ui.pagRow = h("div", { class: "nbd-row nbd-pag-row", hidden: "" }, [field("PAG (perturbed-attention guidance)", h("span", { class: "nbd-grange" }, [ui.pag, ui.pagOut]), "nbd-wide")]);
  ui.errorText = h("p", { class: "nbd-error-text" });
  ui.errorDetails = h("pre");
  ui.error = h("div", { class: "nbd-error", role: "alert" }, [ui.errorText, h("details", {}, [h("summary", { text: "details" }), ui.errorDetails])]);
  ui.note = h("div", { class: "nbd-note", "aria-live": "polite" });
  ui.model = h("span", { class: "nbd-model" });
  ui.explore = h("div", { class: "nbd-explore" });
  return h("div", { class: "nbd-explorer", role: "region", "aria-label": "nbdiffuse Explorer" }, [
    h("div", { class: "nbd-controls" }, [
      field("Prompt", ui.prompt, "nbd-wide"),
      field("Negative prompt", ui.negative, "nbd-wide"),
      h("div", { class: "nbd-row" }, [
        h("div", { class: "nbd-seed" }, [field("Seed", ui.seed), ui.dice]),
        field("Steps", ui.steps, "nbd-narrow"),
        field("Scheduler", ui.scheduler),
        ui.sizeField,
      ]),
      h("div", { class: "nbd-row" }, [field("Guidance", h("span", { class: "nbd-grange" }, [ui.guidance, ui.guidanceOut]), "nbd-wide")]),
      ui.pagRow,
      notes.guidance,
      ui.pictureRow,
      ui.controlRow,
      h("div", { class: "nbd-row nbd-buttons" }, [ui.generate, ui.stop, ui.pause, ui.step, h("span", { class: "nbd-spacer" }), ui.viewGroup]),
      ui.inputs.node,
      notes.notices,
    ]),
    ui.stage,
    h("div", { class: "nbd-progress" }, [ui.bar, ui.count]),
    h("div", { class: "nbd-scrub" }, [ui.play, h("div", { class: "nbd-track" }, [ui.slider, ui.strip, ui.cstrip]), ui.at]),
    ui.gtext,
    ui.ctext,
    ui.explore,
    ui.error,
    ui.note,
    h("div", { class: "nbd-footer" }, [ui.model]),
  ]);
}

// The stage and the status line follow the store (live frames, decoded frames, a new run) and the run's traits.
function listen({ model, store, ui, root, link, stage }) {
  const status = () => { showStatus(model, ui, root); stage.updateProgress(); };
  const onLive = () => {
    link.heard();
    stage.updateProgress();
    if (stage.state.follow && !stage.state.playing) stage.paint(store.newest);
  };
  const onFrames = (e) => {
    const { shown, follow } = stage.state;
    if (shown < 0 || follow || e.detail.k === shown) stage.paint(follow ? store.count - 1 : shown);
  };
  const onReset = () => stage.reset();
  store.addEventListener("live", onLive);
  store.addEventListener("frames", onFrames);
  store.addEventListener("reset", onReset);
  model.on("change:status", () => { link.heard(); status(); stage.followNewest(); });
  model.on("change:error", () => { link.heard(); status(); });
  model.on("change:error_details", status);
  model.on("change:n_steps", () => { stage.updateProgress(); stage.followNewest(); });
  model.on("change:guidances", () => stage.updateProgress());
  model.on("change:size_options", status);
  model.on("change:image_size", () => stage.sizeCanvases());
  model.on("change:view", () => stage.layoutViews());
  model.on("change:capabilities", () => { stage.layoutViews(); status(); });
  model.on("change:frame", () => {
    if (model.get("frame") < 0 && !stage.state.follow) { stage.state.follow = true; stage.paint(store.count - 1); }
  });
  const dispose = () => {
    store.removeEventListener("live", onLive);
    store.removeEventListener("frames", onFrames);
    store.removeEventListener("reset", onReset);
  };
  return { status, dispose };
}

function render({ model, el }) {
  const store = storeFor(model);
  const state = new ViewState(model);
  const ui = stageNodes(controlPanelNodes(controlNodes({})));
  const notes = runNotes(model);
  const root = layout(ui, notes);
  el.append(root);
  // Lumino (JupyterLab, Notebook 7) matches shortcuts from the focused element up and stops at
  // this attribute; Notebook 7 listens in the capture phase, where stopPropagation comes too late.
  // Only the keyboard-driven controls carry it, so Ctrl+S and the like still work on the rest.
  for (const node of [ui.prompt, ui.negative, ui.seed, ui.steps, ui.guidance, ui.pag, ui.slider, ui.stage, ui.play]) {
    node.setAttribute("data-lm-suppress-shortcuts", "true");
  }
  const link = new KernelLink({ model, store, timers: state.timers, noteNode: ui.note, inputs: ui.inputs });
  const stage = new Stage({ model, store, state, ui, root, link });
  bindFields(model, ui, link);
  bindPicture(model, ui, root, link, store);
  bindButtons(model, ui, link, stage);
  stage.bindScrubbing();
  const listening = listen({ model, store, ui, root, link, stage });
  const explore = renderExplore({ model, store, root, ui, state, link, stage });
  const overlays = renderOverlays({ model, store, root, stage, ui, scrub: root.querySelector(".nbd-scrub"), link });
  const unbindControl = bindControl({ model, ui, link, store, stage });

  stage.sizeCanvases();
  listening.status();
  stage.layoutViews();
  const start = model.get("frame");
  stage.paint(start >= 0 ? start : store.count - 1);

  return () => {
    explore();
    overlays();
    unbindControl();
    notes.dispose();
    stage.stopPlaying();
    state.timers.dispose();
    listening.dispose();
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

// The explore panel under the stage: what-if guidance (the shown step's x0 re-weighed with another
// guidance, no model call) with Continue and Branch, the runs panel (runs.js), compare, and exports
// (exports.js); what of it works now (a run going, workshop mode, what the pipeline can do).

const WHATIF_SEND_MS = 33; // approx what-if frames cost a few ms in the kernel: ~30 per second while dragging
const WHATIF_REST_MS = 40; // the drag rests: ask once more for where it stopped

class WhatIf {
  constructor({ model, store, root, ui, state, link, stage }) {
    Object.assign(this, { model, store, root, ui, state, link, stage });
    this.slider = h("input", { type: "range", min: "0", step: "0.1", "aria-label": "What-if guidance" });
    this.out = h("output", { class: "nbd-gvalue" });
    // a PAG run's what-if PAG (pag_panel.py): its row shows only for a run with PAG
    this.pag = h("input", { type: "range", min: "0", max: "10", step: "0.1", "aria-label": "What-if PAG scale" });
    this.pagOut = h("output", { class: "nbd-gvalue" });
    this.cont = h("button", { type: "button", text: "Continue from here", "aria-label": "Continue from here", title: "Branch the run from the shown step with this guidance" });
    this.branch = h("button", { type: "button", text: "Branch here", "aria-label": "Branch here", title: "Continue from the shown step with the controls above (prompt, guidance, scheduler, seed)" });
    this.reset = h("button", { type: "button", class: "nbd-icon", text: "↺", "aria-label": "Back to the guidance used", title: "Back to the guidance used" });
    this.badge = h("span", { class: "nbd-badge", hidden: "" });
    ui.panes.x0.append(this.badge);
    this.active = false; // the x0 pane shows a what-if picture
    this.lastSent = 0;
    this.onWhatIf = (e) => this.show(e.detail);
    this.bind();
  }

  busy() {
    return ["running", "pausing"].includes(this.model.get("status"));
  }

  usedAt(k) {
    const g = this.store.guidances();
    return g.length ? g[Math.max(0, Math.min(k, g.length - 1))] : this.model.get("guidance");
  }

  // The shown run's PAG at step k, or null for a run without PAG.
  pagAt(k) {
    const used = this.model.get("pag_used") || [];
    return used.length ? used[Math.max(0, Math.min(k, used.length - 1))] : null;
  }

  clear() {
    this.active = false;
    this.badge.hidden = true;
    this.root.classList.remove("nbd-whatif");
  }

  syncSlider() {
    this.slider.max = String(this.model.get("guidance_max"));
    const p = this.pagAt(this.state.shown);
    this.pagRow.hidden = p === null;
    if (!this.active) {
      const w = Number(this.usedAt(this.state.shown) ?? 0);
      this.slider.value = String(w);
      this.out.textContent = w.toFixed(1);
      if (p !== null) { this.pag.max = String(Math.max(10, Math.ceil(p))); this.pag.value = String(p); this.pagOut.textContent = p.toFixed(1); }
    }
  }

  // The what-if's values: guidance, and PAG where its slider left the shown step's (the step's PAG, after an
  // adaptive scale: Continue asks the pag_scale that gives it, pag_panel.continue_pag; untouched, the run's own).
  values() {
    const g = Number(this.slider.value);
    const used = this.pagAt(this.state.shown);
    const p = Number(this.pag.value);
    return used === null || Math.abs(p - used) < 1e-6 ? { g } : { g, p };
  }

  request(decoder) {
    const k = this.state.shown;
    if (k < 0 || this.busy()) return;
    this.link.send({ type: "whatif", run: this.model.get("run_id"), k, ...this.values(), decoder });
  }

  drag() {
    this.active = true;
    this.out.textContent = Number(this.slider.value).toFixed(1);
    this.pagOut.textContent = Number(this.pag.value).toFixed(1);
    const now = performance.now();
    if (now - this.lastSent > WHATIF_SEND_MS) { this.lastSent = now; this.request("approx"); }
    this.state.timers.later("whatif", WHATIF_REST_MS, () => this.request("approx"));
  }

  bind() {
    const { model, state, link, ui } = this;
    const rest = () => {
      state.timers.cancel("whatif");
      this.request("approx");
      if (model.get("has_pipe")) this.request("full");
    };
    for (const slider of [this.slider, this.pag]) {
      slider.addEventListener("input", () => this.drag());
      slider.addEventListener("change", rest);
    }
    this.reset.addEventListener("click", () => { this.clear(); this.syncSlider(); this.stage.repaint(); });
    this.cont.addEventListener("click", () => { link.send({ type: "continue", k: state.shown, ...this.values() }); this.clear(); });
    this.branch.addEventListener("click", () => {
      if (ui.inputs.refuse("Branch here")) return;
      link.send({ type: "branch", k: state.shown });
      this.clear();
    });
    this.store.addEventListener("whatif", this.onWhatIf);
    this.root.addEventListener("nbd-scrubbed", () => { this.clear(); });
    this.root.addEventListener("nbd-shown", () => { if (!this.active) this.syncSlider(); });
    this.slider.setAttribute("data-lm-suppress-shortcuts", "true");
    this.pag.setAttribute("data-lm-suppress-shortcuts", "true");
  }

  // The kernel's what-if picture: shown when it is still the one asked for.
  show({ msg, bmp }) {
    if (!this.active || msg.run !== this.model.get("run_id") || msg.k !== this.state.shown) return;
    const moved = Math.abs(msg.g - Number(this.slider.value)) > 1e-6 || (msg.p != null && Math.abs(msg.p - Number(this.pag.value)) > 1e-6);
    if (moved && msg.decoder === "full") return;
    draw(this.ui.canvases.x0, bmp);
    const by = msg.decoder === "full" ? "" : msg.decoder === "tiny" ? " (tiny decoder)" : " (approx)";
    const pag = msg.p != null ? `, PAG ${Number(msg.p).toFixed(1)}` : "";
    this.badge.textContent = `what if guidance ${Number(msg.g).toFixed(1)}${pag}${by}`;
    this.badge.hidden = false;
    this.root.classList.add("nbd-whatif");
  }

  // What works now: idle with a run shown, a model for Continue and Branch, and what the pipeline can do.
  updateAvailability(idle) {
    const { model } = this;
    const hasPipe = model.get("has_pipe");
    const caps = model.get("capabilities") || {};
    const capNote = model.get("capabilities_note") || "";
    const canWhatIf = caps.what_if !== false;
    const canBranch = caps.branch !== false;
    this.slider.disabled = this.pag.disabled = !idle || !canWhatIf;
    this.cont.disabled = !idle || !hasPipe || !canBranch || !canWhatIf;
    this.branch.disabled = !idle || !hasPipe || !canBranch;
    this.slider.title = canWhatIf ? "" : capNote;
    for (const b of [this.cont, this.branch]) {
      if (!hasPipe) b.title = "Needs the model: this Explorer shows saved runs only";
      else if (!canBranch) b.title = capNote;
    }
  }

  dispose() {
    this.state.timers.cancel("whatif");
    this.store.removeEventListener("whatif", this.onWhatIf);
  }
}

// The explore panel's nodes, in ui.explore.
function layoutExplore(ui, whatif, tree, compare, exp) {
  whatif.pagRow = h("div", { class: "nbd-row nbd-whatif-row", hidden: "" }, [
    h("label", { class: "nbd-field nbd-wide" }, [h("span", { class: "nbd-label", text: "What if PAG at the shown step (no model call)" }),
      h("span", { class: "nbd-grange" }, [whatif.pag, whatif.pagOut])]),
  ]);
  ui.workshop = h("div", { class: "nbd-workshop", role: "note" });
  ui.capNote = h("div", { class: "nbd-workshop nbd-capnote", role: "note", hidden: "" });
  ui.explore.append(
    ui.workshop,
    ui.capNote,
    h("div", { class: "nbd-row nbd-whatif-row" }, [
      h("label", { class: "nbd-field nbd-wide" }, [h("span", { class: "nbd-label", text: "What if guidance at the shown step (no model call)" }),
        h("span", { class: "nbd-grange" }, [whatif.slider, whatif.out, whatif.reset])]),
    ]),
    whatif.pagRow,
    h("div", { class: "nbd-row nbd-buttons" }, [whatif.cont, whatif.branch]),
    h("details", { class: "nbd-runs", open: "" }, [tree.summary, tree.list,
      h("div", { class: "nbd-row nbd-pick" }, [field("A", tree.a), field("B", tree.b), tree.go])]),
    compare.panel,
    h("details", { class: "nbd-export" }, [h("summary", { text: "Export" }),
      h("div", { class: "nbd-row" }, [exp.kindRow, field("from step", exp.from, "nbd-narrow"), field("to step", exp.to, "nbd-narrow")]),
      exp.problems.node,
      h("div", { class: "nbd-row" }, [field("into folder", exp.dir, "nbd-wide")]),
      exp.where.node,
      exp.files]),
  );
}

// The explore panel of one view; returns its dispose().
function renderExplore(view) {
  const { model, store, ui, link } = view;
  const whatif = new WhatIf(view);
  const exp = exportControls({ model, store, send: (content) => link.send(content), save: () => link.save(), shownStep: () => view.state.shown });
  const tree = new RunTreePanel(view);
  const compare = new ComparePanel(view, tree);
  tree.followPickers(compare);
  layoutExplore(ui, whatif, tree, compare, exp);

  const busy = () => whatif.busy();
  function updateAvailability() {
    const n = store.count;
    whatif.updateAvailability(!busy() && n > 0);
    const capNote = model.get("capabilities_note") || "";
    ui.capNote.textContent = capNote;
    ui.capNote.hidden = !capNote;
    needsModel([ui.generate, ui.upload], model.get("has_pipe"));
    updateExports(model, exp, n);
    const note = model.get("workshop_note");
    ui.workshop.textContent = note;
    ui.workshop.hidden = !note;
  }
  const drawFiles = () => drawExportList(model, exp, (text) => link.note(text));
  const drawTree = () => tree.draw();
  const loadCompare = () => compare.load();
  const syncSlider = () => whatif.syncSlider();
  const handlers = [
    ["change:runs", drawTree], ["change:runs_dropped", drawTree], ["change:run_thumbs", drawTree], ["change:shown_run", drawTree],
    ["change:comparison", loadCompare], ["change:compare_a", loadCompare], ["change:compare_heat", loadCompare],
    ["change:status", () => { if (busy()) whatif.clear(); updateAvailability(); }],
    ["change:n_steps", updateAvailability], ["change:has_pipe", updateAvailability], ["change:mp4", updateAvailability],
    ["change:workshop_note", updateAvailability], ["change:export_files", drawFiles],
    ["change:capabilities", updateAvailability], ["change:capabilities_note", updateAvailability],
    ["change:export_dir", () => { exp.dir.value = model.get("export_dir"); }],
    ["change:guidances", syncSlider], ["change:guidance_max", syncSlider], ["change:pag_used", syncSlider],
    ["change:run_id", () => { whatif.clear(); exp.typed = false; updateAvailability(); }],
  ];
  for (const [event, fn] of handlers) model.on(event, fn);
  drawTree();
  loadCompare();
  drawFiles();
  updateAvailability();
  syncSlider();
  return () => {
    whatif.dispose();
    for (const [event, fn] of handlers) model.off(event, fn);
    tree.revokeThumbs();
    exp.where.dispose();
    exp.downloads.dispose();
  };
}

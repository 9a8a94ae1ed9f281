// The Explorer's ControlNet controls (control_panel.py), shown for a pipeline with a ControlNet
// (capabilities.control): the control picture (an upload, the edges of any picture, or the sketch pad
// ex.control_pad() from Python; a slot per ControlNet of several), the control scale and its start/end
// window, guess mode, the strip of the control's strength per step under the scrubber, and "No control
// from here" (a branch).

// The control row (ui.controlRow), the strength strip (ui.cstrip) and its line (ui.ctext), added to `ui`.
function controlPanelNodes(ui) {
  ui.useControl = h("input", { type: "checkbox", "aria-label": "Use the control picture" });
  ui.useLabel = h("label", { class: "nbd-check" }, [ui.useControl, h("span", { text: "use" })]);
  ui.controlSlots = h("div", { class: "nbd-control-slots" });
  ui.slots = [];
  ui.controlSliders = {};
  const sliders = [];
  ui.sharedFields = [];
  for (const [name, label, max] of CONTROL_SLIDERS) {
    const { input, out, node } = controlSlider(label, max);
    ui.controlSliders[name] = { input, out };
    ui.sharedFields.push(node);
    sliders.push(node);
  }
  ui.guessMode = h("input", { type: "checkbox", "aria-label": "Guess mode" });
  sliders.push(h("label", { class: "nbd-check nbd-guess", title: "diffusers' guess mode: the ControlNet reads the prompt's half of the batch only, its pull growing from 0.1 at the first block to 1 at the middle; it follows the picture even with an empty prompt (always on for a ControlNet with global pooling)" },
    [ui.guessMode, h("span", { text: "guess mode" })]));
  ui.controlRow = h("div", { class: "nbd-control", role: "group", "aria-label": "Control" }, [
    ui.controlSlots,
    h("div", { class: "nbd-row nbd-control-sliders" }, sliders),
  ]);
  ui.cstrip = svg("svg", { class: "nbd-cstrip", role: "img", "aria-label": "Control strength per step", preserveAspectRatio: "none" });
  ui.noControl = h("button", { type: "button", text: "No control from here", "aria-label": "No control from here",
                               title: "What if the control stopped at the shown step: a branch with control scale 0 for the rest" });
  ui.ctextLine = h("span");
  ui.ctext = h("div", { class: "nbd-ctext" }, [ui.ctextLine, ui.noControl]);
  return ui;
}

const CONTROL_SLIDERS = [["control_scale", "Control scale", 2], ["control_start", "Control start", 1], ["control_end", "Control end", 1]];

// A labelled range slider with its value: {input, out, node}.
function controlSlider(label, max) {
  const input = h("input", { type: "range", min: "0", max: String(max), step: "0.05", "aria-label": label });
  const out = h("output", { class: "nbd-gvalue" });
  return { input, out, node: field(label, h("span", { class: "nbd-grange" }, [input, out])) };
}

// Picture slot j of n (one per ControlNet; several: a MultiControlNetModel): upload, edges, its thumbnail,
// what it is and ×, and (several) its own scale and window sliders. The labels of a single slot name "the
// control picture", of several "control picture j of n" and "control scale j of n".
function controlSlot(j, n) {
  const of = n > 1 ? ` ${j + 1} of ${n}` : "";
  const slot = {
    upload: h("button", { type: "button", text: n > 1 ? `Control picture ${j + 1}…` : "Control picture…",
                          "aria-label": n > 1 ? `Upload control picture${of}` : "Upload a control picture",
                          title: "What the ControlNet follows: for the embedded model an outline, white lines on black (draw one with ex.control_pad())" }),
    edges: h("button", { type: "button", text: "Edges of a picture…",
                         "aria-label": n > 1 ? `Control picture${of} from the edges of a picture` : "Control from the edges of a picture",
                         title: "Any picture: its edges (white lines on black) become the control picture" }),
    thumb: h("img", { class: "nbd-controlpic", alt: `control picture${of}` }),
    kind: h("span", { class: "nbd-label nbd-control-kind" }),
    clear: h("button", { type: "button", class: "nbd-icon", text: "×", "aria-label": n > 1 ? `Remove control picture${of}` : "Remove the control picture" }),
    // a union ControlNet's kind of picture (control_mode): its numbers are the model's, its card names them
    mode: h("select", { class: "nbd-control-mode", "aria-label": `Kind of control picture${of}`,
                        title: "A union ControlNet reads several kinds of picture (edges, depth, pose, …): which kind this one is, by the number its model card gives" }),
  };
  slot.picture = h("span", { class: "nbd-picture-controls" }, [slot.thumb, slot.kind, slot.clear]);
  slot.row = h("div", { class: "nbd-row nbd-picture", "data-net": String(j) }, [slot.upload, slot.edges, slot.mode, slot.picture]);
  slot.sliders = {};
  if (n > 1) {
    const fields = CONTROL_SLIDERS.map(([name, label, max]) => {
      const key = name.replace("control_", "");
      const made = controlSlider(`${label}${of}`, max);
      slot.sliders[key] = made;
      return made.node;
    });
    slot.node = h("div", { class: "nbd-control-unit", "data-net": String(j) }, [slot.row,
      h("div", { class: "nbd-row nbd-control-sliders" }, fields)]);
  } else slot.node = slot.row;
  return slot;
}

// The strengths to draw: the live run's (the frame messages' "cs") while it is ahead of the state.
function controlStrengths(model, store) {
  const n = store.count;
  const saved = (model.get("control_run") || {}).strengths || [];
  if (saved.length >= n || !store.liveControl) return saved.slice(0, n);
  return store.liveControl.slice(0, n);
}

function drawControlStrip(ui, values, run, total) {
  const top = Math.max(...values, 1e-9);
  ui.cstrip.setAttribute("viewBox", `0 0 ${Math.max(values.length - 1, 1)} 1`);
  ui.cstrip.replaceChildren();
  const scales = run.scales || [];
  values.forEach((v, k) => {
    const height = v > 0 ? Math.max(0.08, v / top) : 0.04;
    const rect = svg("rect", { x: k - 0.45, y: 1 - height, width: 0.9, height, class: v > 0 ? "nbd-cacts" : "" });
    const title = svg("title");
    const scale = k < scales.length ? [].concat(scales[k]).join(" / ") : "";
    title.textContent = `step ${k + 1}: control strength ${v.toPrecision(3)}` + (scale ? ` (scale ${scale})` : "");
    rect.append(title);
    ui.cstrip.append(rect);
  });
  ui.cstrip.dataset.strengths = JSON.stringify(values);
  const acting = values.map((v, k) => (v > 0 ? k + 1 : 0)).filter((k) => k);
  ui.ctextLine.textContent = !values.length ? "" : acting.length
    ? `control acts at steps ${acting[0]}–${acting[acting.length - 1]} of ${total || values.length}` +
      (values.length < total ? " so far" : "") + (run.guess_mode ? ", in guess mode" : "") + kindOf(run) +
      " (its strength per step above)"
    : "control did not act at any step so far";
}

// ", kind 3" for a union ControlNet's run (its kind of picture per ControlNet), else "".
function kindOf(run) {
  const kinds = [].concat(run.mode ?? []);
  return kinds.some((k) => k !== null && k !== undefined) ? `, kind ${kinds.map((k) => k ?? "–").join(" / ")}` : "";
}

function bindControlSliders(model, ui, link) {
  let sent = 0;
  const show = () => {
    for (const [name, { input, out }] of Object.entries(ui.controlSliders)) {
      const value = Number(model.get(name));
      if (name === "control_scale") input.max = String(Math.max(2, Math.ceil(value)));
      input.value = String(value);
      out.textContent = value.toFixed(2);
    }
  };
  for (const [name, { input, out }] of Object.entries(ui.controlSliders)) {
    input.addEventListener("input", () => {
      let value = Number(input.value);
      // The window keeps start below end: the one not dragged gives way.
      if (name === "control_start" && value >= model.get("control_end")) value = Math.max(0, Number(model.get("control_end")) - 0.05);
      if (name === "control_end" && value <= model.get("control_start")) value = Math.min(1, Number(model.get("control_start")) + 0.05);
      input.value = String(value);
      out.textContent = value.toFixed(2);
      model.set(name, value);
      // The scale steers a running run from its next step: at most ~10 per second while dragging.
      const now = performance.now();
      if (name === "control_scale" && now - sent > 100) { sent = now; link.save(); } else link.saveSoon();
    });
    input.addEventListener("change", () => link.save());
    model.on(`change:${name}`, show);
  }
  // the box only where the pipeline has a guess mode (SD's and SDXL's ControlNets; not SD3's or Flux's)
  const showGuess = () => {
    ui.guessMode.checked = !!model.get("control_guess_mode");
    ui.guessMode.parentNode.hidden = !model.get("control_guess");
  };
  ui.guessMode.addEventListener("change", () => { model.set("control_guess_mode", ui.guessMode.checked); link.save(); });
  model.on("change:control_guess_mode change:control_guess", showGuess);
  showGuess();
  show();
}

function bindControlPicture(model, ui, link, store) {
  const pick = (edges, net) => sendChosenFile(link, store, { type: "control_upload", edges, net }, "set a control picture");
  const showPictures = () => {
    const thumbs = model.get("control_thumbs") || [];
    const kinds = model.get("control_kinds") || [];
    let any = false;
    ui.slots.forEach((slot, j) => {
      const bytes = thumbs[j];
      const has = !!(bytes && bytes.byteLength);
      any = any || has;
      slot.picture.hidden = !has;
      const old = slot.thumb.src;
      if (has) {
        const view = asDataView(bytes);
        slot.thumb.src = URL.createObjectURL(new Blob([view], { type: mimeOf(view) }));
      } else slot.thumb.removeAttribute("src");
      if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
      slot.kind.textContent = { sketch: "sketch pad", picture: "picture", edges: "edge map" }[kinds[j]] || "";
      slot.thumb.classList.toggle("nbd-control-on", has && !!model.get("use_control"));
    });
    ui.useLabel.hidden = !any;
    ui.useControl.checked = !!model.get("use_control");
  };
  // A slot per ControlNet of the pipeline (control_nets), rebuilt when the model changes.
  const buildSlots = () => {
    const n = Math.max(1, Number(model.get("control_nets")) || 1);
    ui.slots = Array.from({ length: n }, (_, j) => controlSlot(j, n));
    ui.slots.forEach((slot, j) => {
      slot.upload.addEventListener("click", () => pick(false, j));
      slot.edges.addEventListener("click", () => pick(true, j));
      slot.clear.addEventListener("click", () => link.send({ type: "control_clear", net: j }));
      slot.mode.addEventListener("change", () => {
        const modes = [...(model.get("control_modes") || [])];
        modes[j] = slot.mode.value === "" ? null : Number(slot.mode.value);
        model.set("control_modes", modes);
        link.save();
      });
    });
    ui.slots[0].row.append(ui.useLabel);
    ui.controlSlots.replaceChildren(...ui.slots.map((slot) => slot.node));
    ui.slots.forEach((slot, j) => bindUnitSliders(model, slot, j, link));
    for (const node of ui.sharedFields) node.hidden = n > 1; // several: each ControlNet's own, by its picture
    showPictures();
    showUnits();
    showModes();
  };
  // A union ControlNet's slot offers its kinds of picture (control_types[j] of them; 0: not a union one).
  const showModes = () => {
    const types = model.get("control_types") || [];
    const modes = model.get("control_modes") || [];
    ui.slots.forEach((slot, j) => {
      const kinds = Number(types[j]) || 0;
      slot.mode.hidden = kinds === 0;
      if (slot.mode.options.length !== kinds + 1) {
        slot.mode.replaceChildren(h("option", { value: "", text: "kind of picture…" }),
          ...Array.from({ length: kinds }, (_, m) => h("option", { value: String(m), text: `kind ${m}` })));
      }
      slot.mode.value = modes[j] === null || modes[j] === undefined ? "" : String(modes[j]);
    });
  };
  // Each ControlNet's scale and window (control_units), shown by its slot.
  const showUnits = () => {
    const units = model.get("control_units") || [];
    ui.slots.forEach((slot, j) => {
      for (const [key, { input, out }] of Object.entries(slot.sliders)) {
        const value = Number((units[j] || {})[key] ?? (key === "end" ? 1 : key === "start" ? 0 : 1));
        if (key === "scale") input.max = String(Math.max(2, Math.ceil(value)));
        input.value = String(value);
        out.textContent = value.toFixed(2);
      }
    });
  };
  model.on("change:control_units", showUnits);
  model.on("change:control_types change:control_modes", showModes);
  ui.useControl.addEventListener("change", () => { model.set("use_control", ui.useControl.checked); link.save(); });
  for (const name of ["control_thumbs", "use_control", "control_kinds"]) model.on(`change:${name}`, showPictures);
  model.on("change:control_nets", buildSlots);
  buildSlots();
}

// Slot j's own scale and window: dragging one sets control_units[j] (the window keeps start below end; a
// scale steers a running run from its next step, at most ~10 times a second while dragging).
function bindUnitSliders(model, slot, j, link) {
  let sent = 0;
  for (const [key, { input, out }] of Object.entries(slot.sliders)) {
    input.addEventListener("input", () => {
      const units = (model.get("control_units") || []).map((unit) => ({ ...unit }));
      if (!units[j]) return;
      let value = Number(input.value);
      if (key === "start" && value >= units[j].end) value = Math.max(0, units[j].end - 0.05);
      if (key === "end" && value <= units[j].start) value = Math.min(1, units[j].start + 0.05);
      input.value = String(value);
      out.textContent = value.toFixed(2);
      units[j][key] = value;
      model.set("control_units", units);
      const now = performance.now();
      if (key === "scale" && now - sent > 100) { sent = now; link.save(); } else link.saveSoon();
    });
    input.addEventListener("change", () => link.save());
  }
}

// Binds the control row and the strip; returns a function that unbinds the store's events.
function bindControl({ model, ui, link, store, stage }) {
  bindControlSliders(model, ui, link);
  bindControlPicture(model, ui, link, store);
  let key = "";
  const update = () => {
    const caps = model.get("capabilities") || {};
    ui.controlRow.hidden = !caps.control || !model.get("has_pipe"); // saved runs without their model: nothing to steer
    const values = controlStrengths(model, store);
    const run = model.get("control_run") || {};
    const hasRun = !run.unseen && values.length > 0 && (Object.keys(run).length > 0 || !!store.liveControl);
    ui.cstrip.style.display = hasRun ? "" : "none";
    ui.ctext.hidden = !hasRun && !run.unseen;
    if (run.unseen) { // a pipeline that runs its own loop: its settings, and why no strength per step
      const scales = (run.scales || [])[0];
      ui.ctextLine.textContent = `control at scale ${[].concat(scales ?? "").join(" / ")}, window ` +
        `${[].concat(run.start).join(" / ")}–${[].concat(run.end).join(" / ")}${run.guess_mode ? ", in guess mode" : ""}${kindOf(run)} ` +
        "(its strength per step is not seen: the pipeline runs its own loop)";
      key = "";
    }
    const idle = !["running", "pausing", "paused"].includes(model.get("status"));
    ui.noControl.disabled = !idle || !model.get("has_pipe") || !Object.keys(run).length || !caps.control ||
      caps.branch === false; // a branch: a pipeline that runs its own loop cannot
    ui.noControl.hidden = !!run.unseen;
    const now = JSON.stringify(values) + JSON.stringify(run.scales || []) + store.total + !!run.guess_mode + JSON.stringify(run.mode ?? null);
    if (hasRun && now !== key) { key = now; drawControlStrip(ui, values, run, store.total); }
  };
  ui.noControl.addEventListener("click", () => link.send({ type: "no_control", k: stage.state.shown }));
  for (const name of ["capabilities", "control_run", "n_steps", "status", "has_pipe"]) model.on(`change:${name}`, update);
  store.addEventListener("live", update);
  store.addEventListener("reset", update);
  update();
  return () => { store.removeEventListener("live", update); store.removeEventListener("reset", update); };
}

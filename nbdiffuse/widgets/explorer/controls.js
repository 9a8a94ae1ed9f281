// The Explorer's controls: the prompt, seed, steps, scheduler, size, guidance, the start picture and
// the run buttons; bound to their traits, and showing the run's status.

const PAG_TITLE = "Perturbed-attention guidance: how far each step moves away from the prediction with the chosen " +
  "layers' self-attention switched off (0: none); dragged during a run, it steers the next steps";

// The controls' nodes (ui.prompt, ui.generate, ...), added to `ui`.
function controlNodes(ui) {
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
  // a PAG pipeline's perturbed-attention guidance (pag_panel.py): the next run's pag_scale
  ui.pag = h("input", { type: "range", min: "0", max: "10", step: "0.1", "aria-label": "PAG scale", title: PAG_TITLE });
  ui.pagOut = h("output", { class: "nbd-gvalue", "aria-live": "off" });
  ui.generate = h("button", { type: "button", class: "nbd-primary", text: "Generate", "aria-label": "Generate" });
  ui.stop = h("button", { type: "button", text: "Stop", "aria-label": "Stop" });
  ui.pause = h("button", { type: "button", text: "Pause", "aria-label": "Pause" });
  ui.step = h("button", { type: "button", text: "Step", "aria-label": "Step once", title: "Run one step while paused" });
  ui.views = {};
  ui.viewGroup = h("div", { class: "nbd-views", role: "group", "aria-label": "Show" });
  for (const [mode, label] of [["both", "both"], ["x0", "x₀"], ["xt", "xₜ"]]) {
    ui.views[mode] = h("button", { type: "button", "data-mode": mode, text: label, "aria-label": `Show ${mode}` });
    ui.viewGroup.append(ui.views[mode]);
  }
  ui.inputs = new InputProblems(); // number fields holding a refused value (fields.js)
  ui.sizeField = h("div", { class: "nbd-size" }, [field("Width", ui.width), field("Height", ui.height)]);
  pictureNodes(ui);
  return ui;
}

// Image to image: a start picture (uploaded here, or set from Python: ex.start_from / ex.sketch_pad).
function pictureNodes(ui) {
  ui.file = h("input", { type: "file", accept: "image/*", hidden: "", "aria-label": "Picture file" });
  ui.upload = h("button", { type: "button", text: "Start from a picture…", "aria-label": "Upload a start picture",
                           title: "Image to image: the picture is noised to the strength below, then denoised" });
  ui.thumb = h("img", { class: "nbd-startpic", alt: "start picture" });
  ui.usePicture = h("input", { type: "checkbox", "aria-label": "Use the start picture" });
  ui.strength = h("input", { type: "range", min: "0.05", max: "1", step: "0.05", "aria-label": "Strength" });
  ui.strengthOut = h("output", { class: "nbd-gvalue" });
  ui.clearPicture = h("button", { type: "button", class: "nbd-icon", text: "×", "aria-label": "Remove the start picture" });
  // Inpainting (an inpainting pipeline only): its mask, white where the model repaints (mask_panel.py)
  ui.maskUpload = h("button", { type: "button", text: "Mask…", "aria-label": "Upload a mask",
                               title: "Inpainting: white repaints, black keeps the picture (the picture's size)" });
  ui.maskOut = h("span", { class: "nbd-mask-share" });
  ui.maskControls = h("span", { class: "nbd-mask-controls" }, [ui.maskUpload, ui.maskOut]);
  ui.pictureControls = h("span", { class: "nbd-picture-controls" }, [
    ui.thumb,
    h("label", { class: "nbd-check" }, [ui.usePicture, h("span", { text: "use" })]),
    field("Strength", h("span", { class: "nbd-grange" }, [ui.strength, ui.strengthOut])),
    ui.maskControls,
    ui.clearPicture,
  ]);
  ui.pictureRow = h("div", { class: "nbd-row nbd-picture" }, [ui.upload, ui.file, ui.pictureControls]);
}

// A picture file picked in a chooser made at each click (never in the page: the start picture's stays the widget's
// one file field), sent to the kernel as `message` with its bytes; `what` says in the note what needs a kernel.
function sendChosenFile(link, store, message, what) {
  const chooser = h("input", { type: "file", accept: "image/*" });
  chooser.addEventListener("change", async () => {
    const file = chooser.files && chooser.files[0];
    if (!file) return;
    const buffer = await file.arrayBuffer();
    if (!(link.save() && store.send({ ...message, name: file.name }, [buffer]))) {
      link.note(`No kernel is connected to this widget: run the cell again to ${what}.`);
    }
  });
  chooser.click();
}

function field(label, input, cls = "") {
  return h("label", { class: "nbd-field " + cls }, [h("span", { class: "nbd-label", text: label }), input]);
}

// --- controls <-> traits ---
function bindText(model, link, input, name) {
  input.value = model.get(name);
  input.addEventListener("input", () => { model.set(name, input.value); link.saveSoon(); });
  model.on(`change:${name}`, () => { if (input.value !== model.get(name)) input.value = model.get(name); });
}

function bindSelect(model, link, select, name, optionsName, label = (v) => String(v)) {
  const fill = () => {
    select.replaceChildren(...(model.get(optionsName) || []).map((v) => h("option", { value: String(v), text: label(v) })));
    select.value = String(model.get(name));
  };
  fill();
  select.addEventListener("change", () => {
    const current = model.get(name);
    model.set(name, typeof current === "number" ? Number(select.value) : select.value);
    link.save();
  });
  model.on(`change:${optionsName}`, fill);
  model.on(`change:${name}`, () => { select.value = String(model.get(name)); });
}

function bindFields(model, ui, link) {
  const save = () => link.save();
  bindText(model, link, ui.prompt, "prompt");
  bindText(model, link, ui.negative, "negative_prompt");
  bindInt(model, ui.seed, "seed", "Seed", ui.inputs, save);
  bindInt(model, ui.steps, "steps", "Steps", ui.inputs, save);
  bindSelect(model, link, ui.scheduler, "scheduler", "scheduler_options");
  bindSelect(model, link, ui.width, "width", "size_options");
  bindSelect(model, link, ui.height, "height", "size_options");
  bindGuidance(model, ui, link);
  bindPag(model, ui, link);
}

// A PAG pipeline's scale for the next Generate and, dragged during a run, its next steps (its row shows only for
// one); its runs' what-if is in explore.js.
function bindPag(model, ui, link) {
  const show = bindLiveSlider(model, link, ui.pag, ui.pagOut, "pag_scale", () => {
    ui.pag.max = String(Math.max(10, Math.ceil(Number(model.get("pag_scale")))));
    ui.pagRow.hidden = !model.get("pag_available");
  });
  model.on("change:pag_available", show);
}

function bindGuidance(model, ui, link) {
  const show = bindLiveSlider(model, link, ui.guidance, ui.guidanceOut, "guidance",
                              () => { ui.guidance.max = String(model.get("guidance_max")); });
  model.on("change:guidance_max", show);
}

// A slider bound to `trait`, with its value shown in `out`: dragged, each change goes to the kernel (during a run
// it steers the next step), at most ~10 a second, and once more where the drag ends. `range()` sets its bounds
// (before its value, so that the value is not clipped to the old ones). Returns the function that shows the
// trait's value, for the traits its bounds follow.
function bindLiveSlider(model, link, input, out, trait, range) {
  const show = () => {
    const value = Number(model.get(trait));
    range();
    input.value = String(value);
    out.textContent = value.toFixed(1);
  };
  show();
  let sent = 0;
  input.addEventListener("input", () => {
    const value = Number(input.value);
    out.textContent = value.toFixed(1);
    model.set(trait, value);
    const now = performance.now();
    if (now - sent > 100) { sent = now; link.save(); } else link.saveSoon();
  });
  input.addEventListener("change", () => link.save());
  model.on(`change:${trait}`, show);
  return show;
}

// --- the start picture ---
function bindPicture(model, ui, root, link, store) {
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
    const share = Number(model.get("mask_share"));
    ui.maskControls.hidden = !model.get("inpaints");
    ui.maskOut.textContent = share > 0 ? `${Math.round(share * 100)}% repainted` : "no mask yet";
    ui.maskUpload.textContent = share > 0 ? "Other mask…" : "Mask…";
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
    if (!(link.save() && store.send({ type: "upload", name: file.name }, [buffer]))) {
      link.note("No kernel is connected to this widget: run the cell again to upload a picture.");
    }
  });
  ui.maskUpload.addEventListener("click", () => sendChosenFile(link, store, { type: "upload_mask" }, "upload a mask"));
  ui.usePicture.addEventListener("change", () => { model.set("use_picture", ui.usePicture.checked); link.save(); });
  ui.strength.addEventListener("input", () => {
    ui.strengthOut.textContent = Number(ui.strength.value).toFixed(2);
    model.set("strength", Number(ui.strength.value));
    link.saveSoon();
  });
  ui.clearPicture.addEventListener("click", () => link.command("clear_picture"));
  for (const name of ["start_thumb", "use_picture", "strength", "inpaints", "mask_share"]) {
    model.on(`change:${name}`, showPicture);
  }
}

// --- the run buttons and the view mode ---
function bindButtons(model, ui, link, stage) {
  ui.dice.addEventListener("click", () => {
    model.set("seed", Math.floor(Math.random() * 2 ** 32));
    link.save();
  });
  ui.prompt.addEventListener("keydown", (e) => { if (e.key === "Enter") link.command("generate"); });
  ui.generate.addEventListener("click", () => link.command("generate"));
  ui.stop.addEventListener("click", () => link.command("stop"));
  ui.pause.addEventListener("click", () => link.command(["paused", "pausing"].includes(model.get("status")) ? "resume" : "pause"));
  ui.step.addEventListener("click", () => link.command("step"));
  for (const [mode, button] of Object.entries(ui.views)) {
    button.addEventListener("click", () => { model.set("view", mode); link.save(); stage.layoutViews(); });
  }
}

// The run's status on the controls: which buttons work, the error box, the size choices, the model.
function showStatus(model, ui, root) {
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
  ui.pag.disabled = busy && !liveGuidance; // PAG too: such a pipeline reads pag_scale once
  ui.pag.title = busy && !liveGuidance ? (model.get("capabilities_note") || "") : PAG_TITLE;
  root.dataset.status = status;
  const error = model.get("error");
  ui.error.hidden = !error;
  ui.errorText.textContent = error;
  ui.errorDetails.textContent = model.get("error_details");
  ui.errorDetails.parentElement.hidden = !model.get("error_details");
  ui.sizeField.hidden = !(model.get("size_options") || []).length;
  ui.model.textContent = model.get("model_label");
}

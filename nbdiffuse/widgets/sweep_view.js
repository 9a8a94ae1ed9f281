// nbdiffuse SweepView grid (anywidget ES module). widgets/assets.py puts frame_decode.js
// (paintFrame) and dom.js (h) before it.
//
// Every cell's frames of every step are in widget state: the one scrubber moves the whole grid
// without a kernel round trip, also in a saved notebook.

// Adherence 0..1 as a colour from red through yellow to green.
function heatColour(v) {
  const x = Math.max(0, Math.min(1, v));
  return `hsl(${Math.round(120 * x)}, 70%, 45%)`;
}

// One strip: a box per step, its colour the step's adherence; the scrubbed step outlined.
function drawHeat(canvas, heat, k) {
  const n = heat.length;
  canvas.width = Math.max(1, n) * 6;
  canvas.height = 10;
  const ctx = canvas.getContext("2d");
  heat.forEach((v, i) => { ctx.fillStyle = heatColour(v); ctx.fillRect(i * 6, 0, 6, 10); });
  if (k >= 0 && k < n) { ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.strokeRect(k * 6 + 0.5, 0.5, 5, 9); }
  canvas.hidden = n === 0;
}

// The step a cell shows: the scrubber's, or the cell's last where it made fewer steps.
function cellStep(cell, step) {
  if (!cell.steps) return -1;
  return step < 0 || step >= cell.steps ? cell.steps - 1 : step;
}

function sweepControls(model, root) {
  const status = h("span", { class: "nbd-sw-status", "aria-live": "polite" });
  const scrub = h("input", { type: "range", class: "nbd-sw-scrub", min: 0, max: 0, step: 1, "aria-label": "Step of every cell" });
  const at = h("output", { class: "nbd-sw-at" });
  const view = h("select", { class: "nbd-sw-view", "aria-label": "What every cell shows" },
                 h("option", { value: "x0", text: "x0 (predicted picture)" }), h("option", { value: "xt", text: "xₜ (noisy latent)" }));
  const png = h("button", { type: "button", class: "nbd-sw-button", text: "Export PNG" });
  const save = h("button", { type: "button", class: "nbd-sw-button", text: "Save sweep (.nbd + index)" });
  const message = h("div", { class: "nbd-sw-message", "aria-live": "polite" });
  root.append(h("div", { class: "nbd-sw-row" }, status, view, png, save),
              h("label", { class: "nbd-sw-row" }, h("span", { text: "step" }), scrub, at), message);
  for (const key of ["keydown", "keyup", "keypress"]) scrub.addEventListener(key, (e) => e.stopPropagation());
  scrub.addEventListener("input", () => {
    const max = Math.max(0, model.get("max_steps") - 1);
    const k = Number(scrub.value);
    model.set("step", k >= max ? -1 : k);
    model.save_changes();
  });
  view.addEventListener("change", () => { model.set("view", view.value); model.save_changes(); });
  png.addEventListener("click", () => model.send({ type: "png" }));
  save.addEventListener("click", () => model.send({ type: "save" }));
  return () => {
    const max = Math.max(0, model.get("max_steps") - 1), step = model.get("step");
    scrub.max = String(max);
    scrub.value = String(step < 0 ? max : step);
    at.textContent = model.get("max_steps") ? `${(step < 0 ? max : step) + 1} / ${max + 1}` : "";
    view.value = model.get("view");
    status.textContent = `${model.get("done")} / ${model.get("total")} cells done`;
    message.textContent = model.get("message");
    root.dataset.done = String(model.get("done") === model.get("total"));
  };
}

function sweepGrid(model, grid) {
  let parts = [];
  const build = () => {
    const rows = model.get("rows"), columns = model.get("columns"), cells = model.get("cells");
    const hasRows = rows.some((r) => r);
    const table = h("div", { class: "nbd-sw-grid", style: `grid-template-columns: ${hasRows ? "max-content " : ""}repeat(${columns.length}, minmax(0, 140px))` });
    if (hasRows) table.append(h("span"));
    for (const c of columns) table.append(h("div", { class: "nbd-sw-collabel", text: c, title: c }));
    parts = [];
    cells.forEach((cell, i) => {
      const r = Math.floor(i / columns.length);
      if (hasRows && i % columns.length === 0) table.append(h("div", { class: "nbd-sw-rowlabel", text: rows[r], title: rows[r] }));
      const canvas = h("canvas", { class: "nbd-sw-pic", role: "img", "aria-label": cell.label });
      const heat = h("canvas", { class: "nbd-sw-heat", "aria-label": `adherence per step, ${cell.label}` });
      const note = h("span", { class: "nbd-sw-note", text: cell.error || cell.status, title: cell.error || "" });
      const button = h("button", { type: "button", class: `nbd-sw-cell nbd-sw-${cell.status}`, "data-cell": String(i),
                                   "aria-pressed": model.get("selected") === i ? "true" : "false",
                                   "aria-label": `Open ${cell.label} in the Explorer` }, canvas, heat, note);
      button.addEventListener("click", () => { if (cell.steps) model.send({ type: "open", i }); });
      table.append(button);
      parts[i] = { canvas, heat, note };
    });
    grid.replaceChildren(table);
    paintAll();
  };
  const paintAll = () => {
    const cells = model.get("cells"), step = model.get("step"), view = model.get("view");
    cells.forEach((cell, i) => {
      const part = parts[i];
      if (!part) return;
      const k = cellStep(cell, step);
      const frames = cell[view] && cell[view].length ? cell[view] : cell.xt || [];
      paintFrame(part.canvas, k >= 0 ? frames[k] : null);
      drawHeat(part.heat, cell.heat || [], k);
      if (!cell.error && cell.steps) {
        const adherence = cell.heat && cell.heat.length ? ` · ${Math.round(100 * cell.heat[k])}% right` : "";
        part.note.textContent = `step ${k + 1}/${cell.steps}${adherence}`;
      }
    });
  };
  return { build, paintAll };
}

function render({ model, el: host }) {
  const root = h("div", { class: "nbd-teach nbd-sweep" });
  host.replaceChildren(root);
  const title = h("div", { class: "nbd-sw-title" });
  const note = h("div", { class: "nbd-sw-heatnote" });
  root.append(title);
  const drawControls = sweepControls(model, root);
  const grid = h("div", { class: "nbd-sw-gridwrap" });
  root.append(grid, note);
  const { build, paintAll } = sweepGrid(model, grid);
  const refresh = () => {
    title.textContent = model.get("title");
    note.textContent = model.get("heat_note");
    drawControls();
  };
  model.on("change:cells", () => { build(); refresh(); });
  model.on("change:selected", build);
  for (const name of ["step", "view"]) model.on(`change:${name}`, () => { paintAll(); refresh(); });
  for (const name of ["done", "total", "max_steps", "message", "title", "heat_note"]) model.on(`change:${name}`, refresh);
  build();
  refresh();
}

export default { render };

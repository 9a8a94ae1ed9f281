// nbdiffuse teaching widgets (anywidget ES module): one module, one view per `_kind`.
// widgets/assets.py puts frame_decode.js (paintFrame) and dom.js (h, svg) before it.
//
// Every picture and every number comes from widget state, so sliders redraw without a kernel
// round trip and a saved notebook still works. Plots are drawn here as SVG from those numbers.

function figure(caption, cls = "", label = caption) {
  const canvas = h("canvas", { class: "nbd-t-pic", role: "img", "aria-label": label });
  const cap = h("figcaption", { text: caption });
  const fig = h("figure", { class: `nbd-t-fig ${cls}` }, canvas, cap);
  return { fig, canvas, cap };
}

function header(model) {
  const title = h("div", { class: "nbd-t-title" });
  const note = h("div", { class: "nbd-t-note" });
  const update = () => {
    title.textContent = model.get("title");
    note.textContent = model.get("note");
    note.hidden = !model.get("note");
  };
  model.on("change:title", update);
  model.on("change:note", update);
  update();
  return h("div", { class: "nbd-t-head" }, title, note);
}

// JupyterLab takes arrow keys from range inputs unless the event stops here.
function keepKeys(input) {
  input.addEventListener("keydown", (e) => {
    if (!(e.ctrlKey || e.metaKey || e.altKey)) e.stopPropagation();
  });
  return input;
}

function fmt(x, digits = 3) {
  if (!Number.isFinite(x)) return "∞";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

// Round tick values (1, 2, 2.5, 5 x 10^k) inside [lo, hi]: axes a learner can read at a glance.
function niceTicks(lo, hi, n, integer = false) {
  const raw = (hi - lo) / n || 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= raw) || 10 * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

// Ticks at powers of ten for a log axis given in log10 units.
function logTicks(lo, hi) {
  const out = [];
  for (let e = Math.ceil(lo - 1e-9); e <= Math.floor(hi + 1e-9); e++) out.push(e);
  return out.length >= 2 ? out : [lo, hi];
}

// --- plots ------------------------------------------------------------------------------
// plot({xs, series: [{name, ys, xs?, dots?, line?}], xmin, xmax, ymin, ymax, xlabel, ylabel,
//       cursorX, ylog, width, height, label}) -> <svg>
function plot(spec) {
  const W = spec.width || 320, H = spec.height || 170;
  const m = { l: 42, r: 10, t: 10, b: 32 };
  const ylog = !!spec.ylog;
  const ty = (y) => (ylog ? Math.log10(Math.max(y, 1e-6)) : y);
  const all = [];
  for (const s of spec.series) for (const y of s.ys) if (Number.isFinite(ty(y))) all.push(ty(y));
  let ymin = spec.ymin ?? Math.min(...all), ymax = spec.ymax ?? Math.max(...all);
  if (!Number.isFinite(ymin) || !Number.isFinite(ymax)) { ymin = 0; ymax = 1; }
  if (ymax - ymin < 1e-9) { ymax += 0.5; ymin -= 0.5; }
  const xsAll = spec.series.flatMap((s) => s.xs || spec.xs);
  const xmin = spec.xmin ?? Math.min(...xsAll), xmax = spec.xmax ?? Math.max(...xsAll);
  const sx = (x) => m.l + ((x - xmin) / (xmax - xmin || 1)) * (W - m.l - m.r);
  const sy = (y) => H - m.b - ((ty(y) - ymin) / (ymax - ymin)) * (H - m.t - m.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "nbd-t-plot", role: "img",
                            "aria-label": spec.label || `${spec.ylabel} vs ${spec.xlabel}` });
  root.append(svg("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, class: "nbd-t-frame" }));
  const yticks = ylog ? logTicks(ymin, ymax) : niceTicks(ymin, ymax, 4);
  for (const v of yticks) {
    const y = H - m.b - ((v - ymin) / (ymax - ymin)) * (H - m.t - m.b);
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: y, y2: y, class: "nbd-t-grid" }));
    const text = svg("text", { x: m.l - 4, y: y + 3, class: "nbd-t-tick", "text-anchor": "end" });
    text.textContent = ylog ? fmt(10 ** v, 2) : fmt(v, 3);
    root.append(text);
  }
  for (const v of niceTicks(xmin, xmax, 4, spec.xint)) {
    const text = svg("text", { x: sx(v), y: H - m.b + 12, class: "nbd-t-tick", "text-anchor": "middle" });
    text.textContent = fmt(v, 3);
    root.append(text);
  }
  const xl = svg("text", { x: (m.l + W - m.r) / 2, y: H - 4, class: "nbd-t-axis", "text-anchor": "middle" });
  xl.textContent = spec.xlabel || "";
  const yl = svg("text", { x: 10, y: (m.t + H - m.b) / 2, class: "nbd-t-axis", "text-anchor": "middle",
                           transform: `rotate(-90 10 ${(m.t + H - m.b) / 2})` });
  yl.textContent = spec.ylabel || "";
  root.append(xl, yl);
  const order = spec.series.map((s, i) => [s, i]).reverse();  // the first series is drawn last, on top
  order.forEach(([s, i]) => {
    const xs = s.xs || spec.xs;
    const cls = `nbd-t-s${s.color ?? i}`;
    if (s.line !== false) {
      const d = s.ys.map((y, k) => `${k ? "L" : "M"}${sx(xs[k]).toFixed(1)},${sy(y).toFixed(1)}`).join("");
      root.append(svg("path", { d, class: `nbd-t-line ${cls}` }));
    }
    if (s.dots) {
      s.ys.forEach((y, k) => {
        const c = svg("circle", { cx: sx(xs[k]), cy: sy(y), r: s.r || 3, class: `nbd-t-dot ${cls}${s.hollow ? " nbd-t-hollow" : ""}` });
        if (s.highlight === k) c.setAttribute("r", (s.r || 3) + 2.5);
        root.append(c);
      });
    }
  });
  if (spec.cursorX !== undefined && spec.cursorX !== null) {
    const x = sx(spec.cursorX);
    root.append(svg("line", { x1: x, x2: x, y1: m.t, y2: H - m.b, class: "nbd-t-cursor" }));
  }
  return root;
}

function legend(series) {
  return h("div", { class: "nbd-t-legend" },
    ...series.map((s, i) => h("span", { class: `nbd-t-key nbd-t-s${s.color ?? i}` }, h("i"), document.createTextNode(s.name))));
}

// --- ForwardExplorer --------------------------------------------------------------------
function renderForward(model, root) {
  const orig = figure("x₀ (the picture)", "", "Clean picture x0");
  const pix = figure("xₜ in pixel space", "", "Noisy picture in pixel space");
  const lat = figure("xₜ in latent space, VAE-decoded", "", "Noisy latents decoded by the VAE");
  pix.canvas.dataset.view = "pixel";
  lat.canvas.dataset.view = "latent";
  const slider = keepKeys(h("input", { type: "range", class: "nbd-t-slider", min: 0, step: 1, "aria-label": "Timestep t" }));
  const readout = h("div", { class: "nbd-t-readout", "aria-live": "polite" });
  const plots = h("div", { class: "nbd-t-plotbox" });
  root.append(header(model), h("div", { class: "nbd-t-pics" }, orig.fig, pix.fig, lat.fig),
              h("label", { class: "nbd-t-control" }, h("span", { text: "t" }), slider), readout, plots);
  paintFrame(orig.canvas, model.get("original"));

  const draw = () => {
    const ts = model.get("timesteps");
    const i = Math.max(0, Math.min(model.get("index"), ts.length - 1));
    slider.max = String(ts.length - 1);
    slider.value = String(i);
    const t = ts[i];
    const sched = model.get("schedule");
    paintFrame(pix.canvas, model.get("frames_pixel")[i]);
    paintFrame(lat.canvas, model.get("frames_latent")[i]);
    const abar = sched.abar[t], snr = sched.snr_db[t], sigma = sched.sigma[t];
    readout.textContent = `t = ${t} · ᾱₜ = ${fmt(abar)} (signal √ᾱ = ${fmt(Math.sqrt(abar))}, noise √(1−ᾱ) = ${fmt(Math.sqrt(1 - abar))}) · SNR = ${fmt(snr)} dB · σ = ${fmt(sigma)}`;
    root.dataset.t = String(t);
    const shares = [{ name: "ᾱₜ: signal share", ys: sched.abar }, { name: "1 − ᾱₜ: noise share", ys: sched.abar.map((a) => 1 - a), color: 1 },
                    { name: "SNR (dB)", ys: sched.snr_db, color: 2 }, { name: "σ = √((1−ᾱₜ)/ᾱₜ)", ys: sched.sigma, color: 3 }];
    plots.replaceChildren(
      legend(shares),
      h("div", { class: "nbd-t-plots nbd-t-three" },
        plot({ xs: sched.t, series: shares.slice(0, 2), ymin: 0, ymax: 1, xlabel: "t", ylabel: "share",
               cursorX: t, width: 240, label: "abar over t" }),
        plot({ xs: sched.t, series: [shares[2]], xlabel: "t", ylabel: "SNR (dB)", cursorX: t, width: 240,
               label: "SNR in dB over t" }),
        plot({ xs: sched.t, series: [shares[3]], xlabel: "t", ylabel: "σ (log scale)", ylog: true, cursorX: t, width: 240,
               label: "sigma over t" })),
    );
  };
  slider.addEventListener("input", () => {
    model.set("index", Number(slider.value));
    draw();
    model.save_changes();
  });
  for (const name of ["index", "timesteps", "frames_pixel", "frames_latent", "schedule"]) model.on(`change:${name}`, draw);
  model.on("change:original", () => paintFrame(orig.canvas, model.get("original")));
  draw();
}

// --- ScheduleView -----------------------------------------------------------------------
function renderSchedule(model, root) {
  const steps = keepKeys(h("input", { type: "range", class: "nbd-t-slider", min: 1, max: 100, step: 1, "aria-label": "Steps" }));
  const stepsOut = h("output", { class: "nbd-t-value" });
  const selects = [0, 1].map((i) => h("select", { "aria-label": `Sampler ${i + 1}` }));
  const plots = h("div", { class: "nbd-t-plots" });
  const legendBox = h("div");
  const error = h("div", { class: "nbd-t-error", role: "alert" });
  const table = h("div", { class: "nbd-t-steps" });
  root.append(header(model),
    h("div", { class: "nbd-t-row" },
      h("label", { class: "nbd-t-control nbd-t-grow" }, h("span", { text: "steps" }), steps, stepsOut),
      h("label", { class: "nbd-t-control" }, h("span", { text: "sampler" }), selects[0]),
      h("label", { class: "nbd-t-control" }, h("span", { text: "vs" }), selects[1])),
    error, legendBox, plots, table);

  const fillSelects = () => {
    const names = model.get("names"), options = model.get("options");
    selects.forEach((sel, i) => {
      sel.replaceChildren(...(i ? [h("option", { value: "", text: "(none)" })] : []),
                          ...options.map((o) => h("option", { value: o, text: o })));
      sel.value = names[i] || "";
    });
  };
  const draw = () => {
    const sched = model.get("schedule"), series = model.get("series"), cursor = model.get("cursor");
    steps.value = String(model.get("steps"));
    steps.max = String(Math.max(100, model.get("steps")));
    stepsOut.textContent = String(model.get("steps"));
    error.textContent = model.get("error");
    error.hidden = !model.get("error");
    const named = series.map((s, i) => ({ name: s.name, color: i }));
    legendBox.replaceChildren(legend(named));
    const onCurve = series.map((s, i) => ({ name: s.name, xs: s.timesteps, ys: s.snr_db, dots: true, line: false,
                                             color: i, hollow: i > 0, r: i ? 4 : 3, highlight: i === 0 ? cursor : -1 }));
    plots.replaceChildren(
      plot({ xs: sched.t, series: [{ name: "schedule", ys: sched.snr_db, color: "g" }, ...onCurve],
             xlabel: "training timestep t", ylabel: "SNR (dB)", width: 340, label: "sampler timesteps on the SNR curve" }),
      plot({ series: series.map((s, i) => ({ name: s.name, xs: s.sigma.map((_, k) => k + 1), ys: s.sigma, dots: true, color: i,
                                            highlight: i === 0 ? cursor : -1 })),
             xlabel: "step", ylabel: "σ at the step (log)", ylog: true, width: 340, xint: true,
             cursorX: cursor >= 0 ? cursor + 1 : null, label: "noise level per step" }),
    );
    table.textContent = series.map((s) => `${s.name}: t = ${s.timesteps.map((t) => Math.round(t)).join(", ")}`).join("\n");
    root.dataset.points = series.map((s) => s.timesteps.length).join(",");
  };
  steps.addEventListener("input", () => { stepsOut.textContent = steps.value; });
  steps.addEventListener("change", () => { model.set("steps", Number(steps.value)); model.save_changes(); });
  selects.forEach((sel) => sel.addEventListener("change", () => {
    const names = selects.map((s) => s.value).filter((v) => v);
    model.set("names", [...new Set(names)]);
    model.save_changes();
  }));
  for (const name of ["series", "schedule", "cursor", "steps", "error"]) model.on(`change:${name}`, draw);
  model.on("change:names", fillSelects);
  model.on("change:options", fillSelects);
  fillSelects();
  draw();
}

// --- sweeps -----------------------------------------------------------------------------
function renderSweep(model, root) {
  const status = h("div", { class: "nbd-t-status", "aria-live": "polite" });
  const bar = h("progress", { max: 1, class: "nbd-t-progress", "aria-label": "Sweep progress" });
  const stop = h("button", { type: "button", class: "nbd-t-button", text: "Stop" });
  const error = h("div", { class: "nbd-t-error", role: "alert" });
  const grid = h("div", { class: "nbd-t-grid" });
  const scrub = keepKeys(h("input", { type: "range", class: "nbd-t-slider", min: 0, max: 1000, step: 1,
                                       "aria-label": "Fraction of the run" }));
  const at = h("output", { class: "nbd-t-value" });
  const detail = h("div", { class: "nbd-t-detail" });
  const curve = h("div", { class: "nbd-t-curve" });
  const tweakBox = h("input", { type: "text", placeholder: "edit the prompt and press Enter", "aria-label": "Prompt edit" });
  const tweakGo = h("button", { type: "button", class: "nbd-t-button", text: "Try" });
  const tweak = h("div", { class: "nbd-t-row nbd-t-tweak" }, tweakBox, tweakGo);
  root.append(header(model), h("div", { class: "nbd-t-row" }, status, bar, stop), error, grid,
              h("label", { class: "nbd-t-control" }, h("span", { text: "run" }), scrub, at), detail, curve, tweak);
  stop.addEventListener("click", () => model.send({ type: "stop" }));
  const sendTweak = () => {
    if (!tweakBox.value.trim()) return;
    model.send({ type: "tweak", prompt: tweakBox.value.trim() });
  };
  tweakBox.addEventListener("keydown", (e) => { e.stopPropagation(); if (e.key === "Enter") sendTweak(); });
  tweakGo.addEventListener("click", sendTweak);

  let canvases = [];
  let reveal = false; // a cell was just clicked open: bring the opened run into view once it is drawn
  const frameOf = (cell, pos) => {
    const frames = cell.frames || [];
    if (!frames.length) return { buf: null, k: -1 };
    if (pos >= 1 && cell.final && cell.final.byteLength) return { buf: cell.final, k: frames.length - 1 };
    const k = Math.round(pos * (frames.length - 1));
    return { buf: frames[k], k };
  };
  const showFrames = () => {
    const cells = model.get("cells"), pos = model.get("position");
    scrub.value = String(Math.round(pos * 1000));
    at.textContent = pos >= 1 ? "end (full VAE)" : `${Math.round(pos * 100)}%`;
    cells.forEach((cell, i) => {
      const entry = canvases[i];
      if (!entry) return;
      const { buf, k } = frameOf(cell, pos);
      paintFrame(entry.canvas, buf);
      entry.step.textContent = k >= 0 ? `step ${k + 1}/${cell.frames.length}${cell.view === "xt" ? " · xₜ" : ""}`
                                      : cell.status;
    });
    drawDetail();
  };
  const drawDetail = () => {
    const cells = model.get("cells"), i = model.get("selected");
    if (!(i >= 0 && i < cells.length)) { detail.replaceChildren(); detail.hidden = true; return; }
    detail.hidden = false;
    const cell = cells[i];
    const big = figure(`${cell.label} · ${cell.row}`, "nbd-t-big", `Opened run: ${cell.label}`);
    const close = h("button", { type: "button", class: "nbd-t-button", text: "Close", "aria-label": "Close opened run" });
    close.addEventListener("click", () => { model.set("selected", -1); model.save_changes(); });
    const facts = h("div", { class: "nbd-t-facts",
      text: `prompt “${cell.prompt}” · seed ${cell.seed} · ${cell.steps} steps · ${fmt(cell.seconds)} s${cell.info ? " · " + cell.info : ""}` });
    const pieces = [big.fig];
    if (cell.diff && cell.diff.byteLength) {
      const heat = figure(`where it differs from ${cells[0].label} (bright: more)`, "", "Difference heat map");
      paintFrame(heat.canvas, cell.diff);
      pieces.push(heat.fig);
    }
    detail.replaceChildren(h("div", { class: "nbd-t-pics" }, ...pieces), facts, close);
    paintFrame(big.canvas, frameOf(cell, model.get("position")).buf);
    if (reveal) { reveal = false; detail.scrollIntoView({ block: "nearest" }); } // it opens under the grid
  };
  const build = () => {
    const cells = model.get("cells");
    const rows = new Map();
    cells.forEach((cell, i) => {
      if (!rows.has(cell.row)) rows.set(cell.row, []);
      rows.get(cell.row).push(i);
    });
    canvases = [];
    const columns = Math.max(1, model.get("columns"));
    const parts = [];
    for (const [row, indices] of rows) {
      const line = h("div", { class: "nbd-t-cells", style: `grid-template-columns: repeat(${Math.min(columns, 6)}, minmax(0, 150px))` });
      for (const i of indices) {
        const cell = cells[i];
        const canvas = h("canvas", { class: "nbd-t-pic", role: "img", "aria-label": `${cell.label}, ${row}` });
        const step = h("span", { class: "nbd-t-stepno" });
        const button = h("button", { type: "button", class: `nbd-t-cell nbd-t-${cell.status}`,
                                      "aria-label": `Open run ${cell.label} (${row})`, "aria-pressed": model.get("selected") === i ? "true" : "false" },
                          canvas, h("span", { class: "nbd-t-label", text: cell.label }),
                          h("span", { class: "nbd-t-info", text: cell.info || "" }), step);
        button.addEventListener("click", () => {
          reveal = model.get("selected") !== i;
          model.set("selected", model.get("selected") === i ? -1 : i);
          model.save_changes();
        });
        const wrap = h("div", { class: "nbd-t-cellwrap" }, button);
        if (model.get("can_tweak")) {
          const keep = h("button", { type: "button", class: "nbd-t-keep", "aria-label": `Keep ${cell.label}`,
                                      "aria-pressed": cell.kept ? "true" : "false", text: cell.kept ? "★ kept" : "☆ keep" });
          keep.addEventListener("click", () => model.send({ type: "keep", i, keep: !cell.kept }));
          wrap.append(keep);
        }
        line.append(wrap);
        canvases[i] = { canvas, step };
      }
      parts.push(h("div", { class: "nbd-t-rowlabel", text: row }), line);
    }
    grid.replaceChildren(...parts);
    showFrames();
  };
  const drawStatus = () => {
    const cells = model.get("cells");
    const done = cells.filter((c) => c.status === "done").length;
    const s = model.get("status");
    status.textContent = s === "running" ? `running: ${done} of ${cells.length} runs done` : `${s}: ${done} of ${cells.length} runs`;
    bar.value = model.get("progress");
    bar.hidden = s !== "running";
    stop.hidden = s !== "running";
    error.textContent = model.get("error");
    error.hidden = !model.get("error");
    tweak.hidden = !model.get("can_tweak");
    root.dataset.status = s;
  };
  const drawCurve = () => {
    const c = model.get("curve");
    if (!c || !c.x || !c.x.length) { curve.replaceChildren(); return; }
    const series = c.series.map((s, i) => ({ name: s.name, ys: s.y, dots: true, color: i }));
    const parts = [legend(series), plot({ xs: c.x, series, xlabel: c.xlabel, ylabel: c.ylabel, ymin: 0,
                                           width: 420, height: 180, label: `${c.ylabel} vs ${c.xlabel}` })];
    if (c.note) parts.push(h("div", { class: "nbd-t-note", text: c.note }));
    curve.replaceChildren(...parts);
  };
  scrub.addEventListener("input", () => {
    model.set("position", Number(scrub.value) / 1000);
    showFrames();
    model.save_changes();
  });
  model.on("change:cells", () => { build(); drawStatus(); });
  model.on("change:position", showFrames);
  model.on("change:selected", build);
  model.on("change:status", drawStatus);
  model.on("change:progress", drawStatus);
  model.on("change:error", drawStatus);
  model.on("change:curve", drawCurve);
  build();
  drawStatus();
  drawCurve();
}

// --- LatentView -------------------------------------------------------------------------
function renderLatent(model, root) {
  const orig = figure("the picture", "", "Picture");
  const approx = figure("approx linear decode", "", "Approx linear decode of the latents");
  const full = figure("full VAE decode (round trip)", "", "Full VAE decode of the latents");
  const tiles = h("div", { class: "nbd-t-tiles" });
  root.append(header(model), h("div", { class: "nbd-t-pics" }, orig.fig, approx.fig, full.fig),
              h("div", { class: "nbd-t-rowlabel", text: "latent channels (each stretched from its min, black, to its max, white)" }),
              tiles);
  const draw = () => {
    paintFrame(orig.canvas, model.get("original"));
    paintFrame(approx.canvas, model.get("approx"));
    paintFrame(full.canvas, model.get("full"));
    full.cap.textContent = `full VAE decode (round trip), PSNR ${fmt(model.get("round_trip_psnr"))} dB`;
    const ranges = model.get("channel_ranges");
    tiles.replaceChildren(...model.get("channels").map((buf, c) => {
      const f = figure(`channel ${c}: ${fmt(ranges[c][0], 2)} … ${fmt(ranges[c][1], 2)}`, "nbd-t-tile", `Latent channel ${c}`);
      paintFrame(f.canvas, buf);
      return f.fig;
    }));
  };
  for (const name of ["original", "approx", "full", "channels", "round_trip_psnr"]) model.on(`change:${name}`, draw);
  draw();
}

const VIEWS = { forward: renderForward, schedule: renderSchedule, sweep: renderSweep, latent: renderLatent };

function render({ model, el: host }) {
  const kind = model.get("_kind");
  const root = document.createElement("div");
  root.className = `nbd-teach nbd-t-${kind}`;
  root.dataset.kind = kind;
  host.replaceChildren(root);
  (VIEWS[kind] || ((m, r) => { r.textContent = `unknown teaching widget kind ${kind}`; }))(model, root);
}

export default { render };

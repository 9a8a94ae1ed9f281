// Small parts of the Explorer's view, each a named function or class that render() and
// renderExplore() in explorer.js call. widgets/assets.py puts this file between frame_decode.js
// and explorer.js; the helpers used here (h, asDataView, STATUS_TEXT) are resolved when called.

const NEEDS_MODEL = "Needs the model: this Explorer shows saved runs only (Explorer.from_files without pipe=...)";
const DOWNLOAD_URL_KEPT_MS = 60000; // a download's blob URL outlives the click that starts it

// --- number fields: a refused value is said, and nothing runs with another one ------------
function intProblem(label, input, limits) {
  const [min, max] = limits;
  const text = input.value.trim();
  const value = Number(text);
  if (text !== "" && Number.isInteger(value) && value >= min && value <= max) return "";
  const got = input.validity && input.validity.badInput ? "something that is not a number" : text || "nothing";
  return `${label} must be a whole number from ${min} to ${max}; got ${got}`;
}

class InputProblems {
  // The number fields holding a refused value, said in one line (role alert) under them.
  constructor() {
    this.problems = new Map(); // input -> words
    this.node = h("div", { class: "nbd-input-problem", role: "alert", hidden: "" });
  }

  // The field's value, or null when refused: then it is outlined and the line says why.
  check(input, label, limits) {
    input.min = String(limits[0]);
    input.max = String(limits[1]);
    input.dataset.hint = `${label}: a whole number from ${limits[0]} to ${limits[1]}`;
    const problem = intProblem(label, input, limits);
    this.mark(input, problem);
    return problem ? null : Number(input.value);
  }

  mark(input, problem) {
    if (problem) this.problems.set(input, problem);
    else this.problems.delete(input);
    input.setAttribute("aria-invalid", String(!!problem));
    input.title = problem || input.dataset.hint || "";
    this.show();
  }

  clear(input) {
    this.mark(input, "");
  }

  show(prefix = "") {
    const text = [...this.problems.values()].join(". ");
    this.node.textContent = text ? `${prefix}${text}.` : "";
    this.node.hidden = !text;
  }

  // True, saying why, when a field holds a refused value: `what` must not run with another value.
  refuse(what) {
    if (!this.problems.size) return false;
    this.show(`${what} did not run: `);
    this.problems.keys().next().value.focus();
    return true;
  }
}

// A whole-number field bound to a trait: a refused value is said (problems) and kept out of the
// trait, so Generate refuses rather than run the trait's old value. Limits: the trait input_limits.
function bindInt(model, input, name, label, problems, save) {
  const limits = () => (model.get("input_limits") || {})[name] || [Number(input.min), Number(input.max)];
  input.value = String(model.get(name));
  problems.check(input, label, limits());
  input.addEventListener("change", () => {
    const value = problems.check(input, label, limits());
    if (value !== null) { model.set(name, value); save(); }
  });
  model.on(`change:${name}`, () => { input.value = String(model.get(name)); problems.check(input, label, limits()); });
}

// --- progress and notes ---------------------------------------------------------------------
// it/s is steps per second of the wall time since Generate, pauses left out (the kernel's
// run_clock.RunClock), so it agrees with "done in"; while paused it is not shown.
function progressText(status, n, total, its, seconds) {
  if (!total) return "press Generate to start";
  let text = `step ${n} / ${total}`;
  if (its > 0 && status !== "paused") text += `, ${its.toFixed(1)} it/s`;
  if (STATUS_TEXT[status]) text += ` (${STATUS_TEXT[status]})`;
  else if (status === "done" && seconds > 0) text += `, done in ${seconds.toFixed(1)} s`;
  return text;
}

// A line showing a trait in words (hidden when it has none): {node, dispose}.
function traitNote(model, name, attrs, words = (value) => value) {
  const node = h("div", { "aria-live": "polite", ...attrs });
  const show = () => {
    const text = words(model.get(name)) || "";
    node.textContent = text;
    node.hidden = !text;
  };
  show();
  model.on(`change:${name}`, show);
  return { node, dispose: () => model.off(`change:${name}`, show) };
}

// What the shown run changed about its input (traj.notices: unknown words dropped, a prompt
// truncated, which model made which steps), and why the guidance slider moved by itself.
function runNotes(model) {
  const notices = traitNote(model, "notices", { class: "nbd-notices", title: "What the run changed about its input (traj.notices)" },
    (list) => ((list || []).length ? `Note: ${list.join(" · ")}` : ""));
  const guidance = traitNote(model, "guidance_note", { class: "nbd-hint nbd-guidance-note" });
  return { notices: notices.node, guidance: guidance.node, dispose: () => { notices.dispose(); guidance.dispose(); } };
}

// Buttons that need a model: off in workshop mode (Explorer.from_files without a pipe), saying why.
function needsModel(buttons, hasPipe) {
  for (const button of buttons) {
    if (button.dataset.title === undefined) button.dataset.title = button.title || "";
    button.disabled = !hasPipe;
    button.title = hasPipe ? button.dataset.title : NEEDS_MODEL;
  }
}

// --- exports: the step range, and files to download ----------------------------------------
// The range follows the run shown (all of it) until the user types one; a new run resets it.
function followRun(exp, n) {
  for (const input of [exp.from, exp.to]) input.max = String(Math.max(1, n));
  if (exp.typed) return;
  exp.from.value = "1";
  exp.to.value = String(Math.max(1, n));
  exp.problems.clear(exp.from);
  exp.problems.clear(exp.to);
}

// {start, stop} of the typed steps (0-based, stop excluded), or null: refused, the line says why.
function exportRange(exp, n) {
  const from = exp.problems.check(exp.from, "from step", [1, Math.max(1, n)]);
  const to = exp.problems.check(exp.to, "to step", [1, Math.max(1, n)]);
  if (from === null || to === null) return null;
  if (from > to) {
    exp.problems.mark(exp.from, `from step ${from} comes after to step ${to}`);
    return null;
  }
  return { start: from - 1, stop: to };
}

// The export row: kinds, the step range and the folder ({..., kindRow, from, to, dir, files, where, problems}).
function exportControls({ model, store, send, save, shownStep }) {
  const exp = {
    kinds: {},
    from: h("input", { type: "number", min: "1", step: "1", "aria-label": "Export from step" }),
    to: h("input", { type: "number", min: "1", step: "1", "aria-label": "Export to step" }),
    dir: h("input", { type: "text", "aria-label": "Export folder", placeholder: "folder" }),
    files: h("ul", { class: "nbd-files", "aria-live": "polite" }),
    where: traitNote(model, "export_dir", { class: "nbd-hint nbd-where" },
      (dir) => `Files are written to ${dir} (the kernel's working folder unless you change it); click a name to download it.`),
    problems: new InputProblems(),
    typed: false, // the user typed a range: it no longer follows the run shown
    downloads: downloads(store),
  };
  exp.kindRow = h("span", { class: "nbd-exports", role: "group", "aria-label": "Export" });
  for (const [kind, label, title] of [["png", "PNG", "the shown frame, with every parameter in the PNG"],
    ["gif", "GIF", "the chosen step range"], ["mp4", "MP4", "the chosen step range (needs imageio-ffmpeg)"],
    ["html", "HTML", "a self-contained page that works offline"], ["nbd", ".nbd", "the trajectory file"]]) {
    exp.kinds[kind] = h("button", { type: "button", text: label, "aria-label": `Export ${label}`, title: `Export ${title}` });
    exp.kinds[kind].addEventListener("click", () => {
      const range = ["gif", "mp4"].includes(kind) ? exportRange(exp, store.count) : {};
      if (!range) return exp.problems.show(`${kind.toUpperCase()} export did not run: `);
      send({ type: "export", kind, k: shownStep(), view: model.get("view") === "xt" ? "xt" : "x0", ...range });
    });
    exp.kindRow.append(exp.kinds[kind]);
  }
  exp.dir.value = model.get("export_dir");
  exp.dir.addEventListener("change", () => { model.set("export_dir", exp.dir.value); save(); });
  for (const n of [exp.from, exp.to, exp.dir]) n.setAttribute("data-lm-suppress-shortcuts", "true");
  for (const n of [exp.from, exp.to]) n.addEventListener("change", () => { exp.typed = true; exportRange(exp, store.count); });
  return exp;
}

// Exported files as links that download them. The bytes come from the kernel (the file is on its
// machine, perhaps not under the Jupyter server's root), so this works in JupyterLab, Notebook 7
// and Voila alike, and over a remote kernel.
function drawExportFiles(list, files, folder, download) {
  list.replaceChildren(...files.map((path) => {
    const name = path.split(/[\\/]/).pop();
    const dir = path.slice(0, path.length - name.length).replace(/[\\/]+$/, "");
    const link = h("a", { href: "#", class: "nbd-download", text: name, title: `Download ${path}`, "aria-label": `Download ${name}` });
    link.addEventListener("click", (e) => { e.preventDefault(); download(path); });
    return h("li", {}, dir && dir !== folder.replace(/[\\/]+$/, "") ? [link, h("small", { text: ` in ${dir}` })] : [link]);
  }));
}

function saveBytes(name, buffer) {
  const url = URL.createObjectURL(new Blob([asDataView(buffer)], { type: "application/octet-stream" }));
  const link = h("a", { href: url, download: name, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), DOWNLOAD_URL_KEPT_MS);
}

// Downloads this view asked for ({request(path) -> sent?, dispose}); other views of the widget ignore them.
function downloads(store) {
  const pending = new Set();
  const onDownload = (e) => {
    const { msg, buffer } = e.detail;
    if (!pending.delete(msg.req) || !buffer) return;
    saveBytes(msg.name, buffer);
  };
  store.addEventListener("download", onDownload);
  return {
    request(path) {
      const req = `${Date.now()}-${Math.random().toString(36).slice(2)}`;
      pending.add(req);
      return store.send({ type: "download", path, req });
    },
    dispose: () => store.removeEventListener("download", onDownload),
  };
}

// --- compare --------------------------------------------------------------------------------
// While a comparison is open, the A/B pickers show its two runs: panel and pickers never disagree.
function syncPickers(tree, info) {
  if (!info || !(info.pairs || []).length) return false;
  const ids = [...tree.a.options].map((o) => o.value);
  if (ids.includes(info.a)) tree.a.value = info.a;
  if (ids.includes(info.b)) tree.b.value = info.b;
  return true;
}

// "A: #7 · seed 0, guidance 5": what sets run A apart from B (every setting in the tooltip).
function captionCompare(node, info, side) {
  const words = info[`caption_${side}`] || info[`prompt_${side}`] || "";
  node.textContent = `${side.toUpperCase()}: ${info[`label_${side}`]} · ${words}`;
  node.title = info[`settings_${side}`] || words;
}

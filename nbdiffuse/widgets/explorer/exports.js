// The Explorer's export row: kinds, the step range and the folder; exported files as download links.

const DOWNLOAD_URL_KEPT_MS = 60000; // a download's blob URL outlives the click that starts it

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

// Which exports work now (none without a run; MP4 needs imageio-ffmpeg); the range follows the run while idle.
function updateExports(model, exp, n) {
  for (const [kind, b] of Object.entries(exp.kinds)) b.disabled = n === 0 || (kind === "mp4" && !model.get("mp4"));
  if (!model.get("mp4")) exp.kinds.mp4.title = "MP4 export needs imageio-ffmpeg: pip install imageio-ffmpeg";
  if (!["running", "pausing"].includes(model.get("status"))) followRun(exp, n);
}

// The files written so far (export_files), each a download link; `note` says when no kernel can send one.
function drawExportList(model, exp, note) {
  const files = model.get("export_files") || [];
  drawExportFiles(exp.files, files, model.get("export_dir"), (path) => {
    if (!exp.downloads.request(path)) note(`No kernel is connected to this widget: the file is at ${path}`);
  });
  if (files.length) exp.files.parentElement.open = true;
}

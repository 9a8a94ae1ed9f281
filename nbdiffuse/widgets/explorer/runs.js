// The runs panel: the run tree (every run kept, branches under their parents, with thumbnails) and
// the compare view (two runs and their difference under one scrubber), with the A/B pickers.

function decodeAll(bufs) {
  return Promise.all((bufs || []).map((b) => decodeFrame(b).catch(() => null)));
}

class RunTreePanel {
  constructor({ model, link }) {
    this.model = model;
    this.link = link;
    this.list = h("ol", { class: "nbd-tree", "aria-label": "Runs" });
    this.a = h("select", { "aria-label": "Compare run A" });
    this.b = h("select", { "aria-label": "Compare run B" });
    this.go = h("button", { type: "button", text: "Compare", "aria-label": "Compare" });
    this.summary = h("summary", { text: "Runs" });
    this.picked = false; // the user chose A or B: keep the choice as the tree grows
    this.thumbURLs = [];
    this.go.addEventListener("click", () => link.send({ type: "compare", a: this.a.value, b: this.b.value }));
  }

  // An open comparison follows its pickers.
  followPickers(compare) {
    for (const select of [this.a, this.b]) select.addEventListener("change", () => {
      this.picked = true;
      if (!compare.panel.hidden) this.go.click();
    });
  }

  node(node, thumbs, shownId) {
    const img = h("img", { class: "nbd-thumb", alt: "" });
    const buf = thumbs[node.index];
    if (buf && buf.byteLength) {
      const view = asDataView(buf);
      const url = URL.createObjectURL(new Blob([view], { type: mimeOf(view) }));
      this.thumbURLs.push(url);
      img.src = url;
    }
    const steps = node.steps < node.total ? `${node.steps}/${node.total} steps, stopped` : `${node.total} steps`;
    const button = h("button", { type: "button", class: "nbd-node", "data-run": node.id, "aria-current": String(node.id === shownId),
      title: node.settings || node.prompt, "aria-label": `Load run ${node.label}` }, [
      img, h("span", { class: "nbd-node-text" }, [h("b", { text: node.label }), " ", h("span", { text: node.changed }), h("small", { text: steps })]),
    ]);
    button.addEventListener("click", () => this.link.send({ type: "load_run", id: node.id }));
    const item = h("li", { "data-depth": String(node.depth) }, [button]);
    item.style.paddingLeft = `${Math.min(node.depth, 6) * 16}px`;
    return item;
  }

  draw() {
    const { model } = this;
    const nodes = model.get("runs") || [];
    const thumbs = model.get("run_thumbs") || [];
    this.revokeThumbs();
    const shownId = model.get("shown_run");
    const dropped = model.get("runs_dropped") || 0;  // older runs let go of (Explorer max_runs)
    this.summary.textContent = `Runs (${nodes.length})` + (dropped ? ` · ${dropped} older dropped` : "");
    this.list.replaceChildren(...nodes.map((node) => this.node(node, thumbs, shownId)));
    this.fillPickers(nodes, shownId);
    syncPickers(this, model.get("comparison"));
    this.go.disabled = nodes.length < 2;
  }

  fillPickers(nodes, shownId) {
    const options = () => nodes.map((n) => h("option", { value: n.id, text: `${n.label} ${n.changed}` }));
    const keepA = this.a.value, keepB = this.b.value;
    this.a.replaceChildren(...options());
    this.b.replaceChildren(...options());
    const ids = nodes.map((n) => n.id);
    // Default pair: the shown run and its parent (a branch and where it came from), else the last two.
    const shownNode = nodes.find((n) => n.id === shownId);
    const defaultB = shownNode ? shownNode.id : ids[ids.length - 1];
    const others = ids.filter((id) => id !== defaultB);
    const defaultA = shownNode && shownNode.parent && ids.includes(shownNode.parent) ? shownNode.parent : others[others.length - 1];
    // Keep the user's own pick; otherwise follow the shown run as the tree grows.
    this.a.value = this.picked && ids.includes(keepA) ? keepA : defaultA || "";
    this.b.value = this.picked && ids.includes(keepB) ? keepB : defaultB || "";
  }

  revokeThumbs() {
    this.thumbURLs.forEach((u) => URL.revokeObjectURL(u));
    this.thumbURLs = [];
  }
}

class ComparePanel {
  constructor({ model, link }, tree) {
    this.model = model;
    this.tree = tree;
    this.canvases = {
      a: h("canvas", { class: "nbd-frame nbd-pixelated", role: "img", "aria-label": "Run A" }),
      b: h("canvas", { class: "nbd-frame nbd-pixelated", role: "img", "aria-label": "Run B" }),
      heat: h("canvas", { class: "nbd-frame nbd-pixelated", role: "img", "aria-label": "Difference heatmap" }),
    };
    this.caps = { a: h("figcaption"), b: h("figcaption"), heat: h("figcaption", { text: "difference |A − B|" }) };
    this.slider = h("input", { type: "range", class: "nbd-cslider", min: "0", max: "0", step: "1", value: "0", "aria-label": "Compare step" });
    this.at = h("span", { class: "nbd-cat" });
    this.curve = svg("svg", { class: "nbd-curve", role: "img", "aria-label": "Difference per step", preserveAspectRatio: "none", viewBox: "0 0 100 30" });
    this.text = h("div", { class: "nbd-gtext" });
    this.close = h("button", { type: "button", class: "nbd-icon", text: "✕", "aria-label": "Close compare", title: "Close compare" });
    this.bitmaps = { a: [], b: [], heat: [] };
    this.token = null; // the newest decode: an older one finishing late is dropped
    this.slider.setAttribute("data-lm-suppress-shortcuts", "true");
    this.panel = h("section", { class: "nbd-compare", "aria-label": "Compare runs", hidden: "" }, [
      h("div", { class: "nbd-compare-head" }, [h("b", { text: "Compare" }), h("span", { class: "nbd-spacer" }), this.close]),
      h("div", { class: "nbd-stage nbd-compare-stage" }, ["a", "b", "heat"].map((key) =>
        h("figure", { class: "nbd-pane", "data-compare": key }, [this.canvases[key], this.caps[key]]))),
      h("div", { class: "nbd-scrub" }, [h("div", { class: "nbd-track" }, [this.slider]), this.at]),
      this.curve,
      this.text,
    ]);
    this.close.addEventListener("click", () => link.send({ type: "compare_close" }));
    this.slider.addEventListener("input", () => this.paint());
    this.slider.addEventListener("keydown", (e) => e.stopPropagation());
  }

  paint() {
    const info = this.model.get("comparison") || {};
    const i = Number(this.slider.value);
    const pairs = info.pairs || [];
    for (const key of ["a", "b", "heat"]) {
      const bmp = this.bitmaps[key][i];
      if (bmp) draw(this.canvases[key], bmp);
    }
    if (pairs[i]) this.at.textContent = `${i + 1} / ${pairs.length}`;
    const marker = this.curve.querySelector(".nbd-curve-at");
    if (marker && pairs.length) {
      marker.setAttribute("x1", String((100 * i) / Math.max(1, pairs.length - 1)));
      marker.setAttribute("x2", marker.getAttribute("x1"));
    }
  }

  load() {
    const { model } = this;
    const info = model.get("comparison") || {};
    const pairs = info.pairs || [];
    this.panel.hidden = !pairs.length;
    if (!pairs.length) return;
    captionCompare(this.caps.a, info, "a");
    captionCompare(this.caps.b, info, "b");
    syncPickers(this.tree, info);
    this.slider.max = String(pairs.length - 1);
    this.slider.value = String(pairs.length - 1);
    this.drawCurve(info, pairs);
    const token = {};
    this.token = token;
    Promise.all([decodeAll(model.get("compare_a")), decodeAll(model.get("compare_b")), decodeAll(model.get("compare_heat"))])
      .then(([a, b, heat]) => {
        if (this.token !== token) return;
        this.bitmaps = { a, b, heat };
        this.paint();
      });
  }

  // The difference per step, where the composition locks in, and the step shown.
  drawCurve(info, pairs) {
    const diff = info.difference || [];
    const top = Math.max(...diff, 1e-6);
    const x = (i) => (100 * i) / Math.max(1, diff.length - 1);
    const points = diff.map((d, i) => `${x(i).toFixed(2)},${(29 - (27 * d) / top).toFixed(2)}`).join(" ");
    this.curve.replaceChildren(
      svg("polyline", { points, class: "nbd-curve-line", "vector-effect": "non-scaling-stroke" }),
      svg("line", { x1: x(info.locks_in_at), x2: x(info.locks_in_at), y1: 0, y2: 30, class: "nbd-curve-lock", "vector-effect": "non-scaling-stroke" }),
      svg("line", { x1: 100, x2: 100, y1: 0, y2: 30, class: "nbd-curve-at", "vector-effect": "non-scaling-stroke" }),
    );
    this.curve.dataset.difference = JSON.stringify(diff);
    const of = info.view === "xt" ? "xₜ" : "x₀";
    this.text.textContent = `difference per step (mean |A − B| of ${of}); the composition locks in at step ${info.locks_in_at + 1} of ${pairs.length}`;
    this.caps.heat.textContent = `difference |A − B| of ${of}`;
  }
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

// The decision curve under the scrubber, on demand: per attribute, the share of continuations from step k
// that kept the shown run's attribute, on the slider's x axis; a dashed mark where the colour is decided.

const DECISION_COLOURS = ["#e4572e", "#3d8fd1", "#3bb273", "#c58b00", "#9b5de5", "#6c757d"];

function decisionNodes() {
  const ui = {};
  ui.button = h("button", { type: "button", class: "nbd-chip nbd-decide", text: "decision curve", title: "At which step is each attribute decided? Continues the shown run from a spread of steps with fresh noise (a few seconds on a CPU)" });
  ui.plot = svg("svg", { class: "nbd-decision", role: "img", "aria-label": "Decision curve", preserveAspectRatio: "none", hidden: "" });
  ui.legend = h("div", { class: "nbd-decision-legend", hidden: "" });
  return ui;
}

class DecisionView {
  constructor({ model, store, ui: stageUi }) {
    Object.assign(this, { model, store });
    this.ui = decisionNodes();
    stageUi.strip.after(this.ui.plot, this.ui.legend);
  }

  // Draw the curve when it belongs to the run on screen; hide it otherwise.
  draw() {
    const { ui, model } = this;
    const curve = model.get("decision") || {};
    const status = model.get("decision_status");
    const caps = model.get("capabilities") || {};
    // continuations start from x0 and run nbdiffuse's own loop: a pipeline that runs its own has none
    const cannot = caps.x0 === false || caps.branch === false;
    ui.button.disabled = status === "running" || !model.get("has_pipe") || !model.get("shown_run") || cannot;
    ui.button.title = cannot ? model.get("capabilities_note") || "" : "";
    ui.button.textContent = status === "running" ? "deciding…" : "decision curve";
    const mine = curve.run && curve.run === model.get("shown_run");
    ui.plot.toggleAttribute("hidden", !mine); // an SVG element has no .hidden property
    ui.legend.hidden = !mine;
    if (!mine) return;
    const last = Math.max(curve.total - 1, 1);
    ui.plot.setAttribute("viewBox", `0 0 ${last} 1`);
    ui.plot.replaceChildren();
    const names = Object.keys(curve.keep);
    names.forEach((name, i) => {
      const points = curve.steps.map((k, j) => `${k},${(1 - curve.keep[name][j]) * 0.9 + 0.05}`).join(" ");
      ui.plot.append(svg("polyline", { points, fill: "none", stroke: DECISION_COLOURS[i % DECISION_COLOURS.length], "stroke-width": "2", "vector-effect": "non-scaling-stroke", "data-attribute": name }));
    });
    const decided = curve.decided.color;
    const legend = names.map((name, i) => h("span", { class: "nbd-decision-key", style: `--key: ${DECISION_COLOURS[i % DECISION_COLOURS.length]}`, text: name }));
    if (decided !== null && decided !== undefined) {
      ui.plot.append(svg("line", { x1: decided, x2: decided, y1: 0, y2: 1, class: "nbd-decided", "vector-effect": "non-scaling-stroke", "data-step": decided }));
      legend.push(h("span", { class: "nbd-decided-text", text: `colour decided here: step ${decided + 1}` }));
    } else if (names.includes("color")) {
      legend.push(h("span", { class: "nbd-decided-text", text: "colour not decided before the last point" }));
    }
    ui.legend.replaceChildren(...legend);
  }

  bind(link) {
    const { model, ui } = this;
    ui.button.addEventListener("click", () => { link.save(); this.store.send({ type: "decision_curve" }); });
    const redraw = () => this.draw();
    const names = ["decision", "decision_status", "shown_run", "has_pipe", "capabilities"];
    for (const name of names) model.on(`change:${name}`, redraw);
    this.draw();
    return () => { for (const name of names) model.off(`change:${name}`, redraw); };
  }
}

// Small parts of the Explorer's controls: number fields that say what they refuse, the progress
// line, notes that show a trait in words, and buttons that need a model.

const NEEDS_MODEL = "Needs the model: this Explorer shows saved runs only (Explorer.from_files without pipe=...)";
const STATUS_TEXT = {
  pausing: "pausing after this step…",
  paused: "paused",
  stopped: "stopped",
  error: "failed",
};

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

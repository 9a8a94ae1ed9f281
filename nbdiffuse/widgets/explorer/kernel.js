// Talking to the kernel from one view: control values saved to it, commands sent, and a note when
// no kernel answers (a saved notebook, or a kernel busy running another cell).

const SAVE_SOON_MS = 250; // typing and dragging reach the kernel at most this often
const KERNEL_QUIET_MS = 6000; // a command unanswered this long gets a note

class KernelLink {
  constructor({ model, store, timers, noteNode, inputs }) {
    this.model = model;
    this.store = store;
    this.timers = timers;
    this.noteNode = noteNode;
    this.inputs = inputs; // number fields that may hold a refused value (fields.js InputProblems)
  }

  // Send the changed traits now; false when no kernel is behind this widget.
  save() {
    this.timers.cancel("save");
    try {
      this.model.save_changes();
      return true;
    } catch (err) {
      return false;
    }
  }

  saveSoon() {
    this.timers.later("save", SAVE_SOON_MS, () => this.save());
  }

  // A button's command (generate, stop, pause, ...): the kernel answers by changing the state.
  command(type) {
    if (type === "generate" && this.inputs.refuse("Generate")) return;
    const ok = this.save() && this.store.send({ type });
    this.timers.cancel("kernel");
    if (!ok) {
      this.note("No kernel is connected to this widget (a saved notebook?): scrub the saved frames, or run the cell again to generate.");
      return;
    }
    this.timers.later("kernel", KERNEL_QUIET_MS, () => this.note("No answer from the kernel yet: it may be busy running another cell, or no kernel is behind this saved widget (run the cell again)."));
  }

  // A request of the explore panel (what-if, branch, load a run, compare, export).
  send(content) {
    this.save();
    if (!this.store.send(content)) this.noteNode.textContent = "No kernel is connected to this widget: run the cell again to explore.";
  }

  // The kernel answered: the note about its silence goes.
  heard() {
    this.timers.cancel("kernel");
    this.note("");
  }

  note(text) {
    this.noteNode.textContent = text;
    this.noteNode.hidden = !text;
  }
}

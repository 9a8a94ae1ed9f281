"""The Explorer: a Jupyter widget that runs a diffusion pipeline step by step and shows every step live.

`Explorer` (widget.py) is the widget class: its traits (traits.py) and public API. The rest of this
package is what the class uses, each part named for what it holds:

- lifecycle.py: a run's start, hold (pause, single step) and end in the widget's state; a kept run shown again;
- run_controls.py: what the controls show when a run starts;
- kept_runs.py, run_tree.py: the runs kept (frames, thumbnails, labels, max_runs) and their tree and branches;
- model_swap.py: set_pipeline (controls that follow the new model, runs of the old one);
- workshop.py: saved runs without a model (Explorer.from_files);
- browser.py: the page's requests (custom messages) and the decodes they start.
"""
from .widget import Explorer

__all__ = ["Explorer"]

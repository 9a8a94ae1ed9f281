"""nbdiffuse: watch, scrub and branch the denoising steps of diffusion models in Jupyter."""

from . import _quiet  # noqa: F401  (before diffusers is imported)
from ._version import __version__
from . import shapes
from .core import (ApproxDecoder, EmbeddedModelMissing, PipelineLoadError, RunControl, Step, StepIndexError,
                   Trajectory, TrajectoryFileError, branch, compare, decision_curve, decision_curve_of, load_pipeline,
                   schedulers, set_lora_scale, set_tiny_decoder, speaks_shapes, Sweep, sweep, trace)
from .widgets import Explorer, MaskPad, SketchPad, SweepView
from .widgets.teaching import (ForwardExplorer, GuidanceSweep, LatentView, SamplerCompare, ScheduleView,
                               SeedsAndPrompts, StepsCompare)

__all__ = ["ApproxDecoder", "EmbeddedModelMissing", "Explorer", "ForwardExplorer", "GuidanceSweep", "LatentView", "MaskPad",
           "SamplerCompare", "ScheduleView", "SeedsAndPrompts", "SketchPad", "SweepView", "StepsCompare", "PipelineLoadError",
           "RunControl", "Step",
           "StepIndexError", "Trajectory", "TrajectoryFileError", "branch", "compare", "decision_curve", "decision_curve_of",
           "load_pipeline", "schedulers",
           "set_lora_scale", "set_tiny_decoder", "shapes", "speaks_shapes", "Sweep", "sweep", "trace", "__version__"]

"""nbdiffuse: watch, scrub and branch the denoising steps of diffusion models in Jupyter."""
__version__ = "0.1.0"

from .core import (ApproxDecoder, EmbeddedModelMissing, PipelineLoadError, RunControl, Step, StepIndexError,
                   Trajectory, TrajectoryFileError, branch, load_pipeline, schedulers, set_tiny_decoder, trace)
from .widgets import Explorer

__all__ = ["ApproxDecoder", "Explorer", "EmbeddedModelMissing", "PipelineLoadError", "RunControl", "Step", "StepIndexError",
           "Trajectory", "TrajectoryFileError", "branch", "load_pipeline", "schedulers", "set_tiny_decoder",
           "trace", "__version__"]

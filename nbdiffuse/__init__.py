"""nbdiffuse: watch, scrub and branch the denoising steps of diffusion models in Jupyter."""
__version__ = "0.1.0"

from . import shapes
from .core import (ApproxDecoder, EmbeddedModelMissing, PipelineLoadError, RunControl, Step, StepIndexError,
                   Trajectory, TrajectoryFileError, branch, load_pipeline, schedulers, set_tiny_decoder, trace)

__all__ = ["ApproxDecoder", "EmbeddedModelMissing", "PipelineLoadError", "RunControl", "Step",
           "StepIndexError", "Trajectory", "TrajectoryFileError", "branch", "load_pipeline", "schedulers",
           "set_tiny_decoder", "shapes", "trace", "__version__"]

"""nbdiffuse.core: tracing, trajectories and decoding. torch + diffusers only; never imports widgets."""
from .branch import branch
from .compare import Comparison, compare
from .control import RunControl
from .decision import DecisionCurve, decision_curve, decision_curve_of
from .decode import ApproxDecoder
from .loading import EmbeddedModelMissing, PipelineLoadError, load_pipeline, set_tiny_decoder
from .lora import set_lora_scale
from .schedulers import schedulers
from .step import Step
from .sweep import Sweep, sweep
from .trace import prepare, trace
from .trajectory import StepIndexError, Trajectory
from .nbd_schema import TrajectoryFileError
from .pipe_attrs import speaks_shapes

__all__ = ["ApproxDecoder", "Comparison", "DecisionCurve", "compare", "decision_curve", "decision_curve_of",
           "EmbeddedModelMissing", "PipelineLoadError", "RunControl", "Step",
           "StepIndexError",
           "Trajectory", "TrajectoryFileError", "branch", "load_pipeline", "prepare", "schedulers",
           "set_lora_scale", "set_tiny_decoder", "speaks_shapes", "Sweep", "sweep", "trace"]

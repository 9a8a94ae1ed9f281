"""Teaching widgets: the forward process, noise schedules, guidance, samplers, steps, seeds, the VAE."""
from .forward import ForwardExplorer
from .latent_view import LatentView
from .schedule_view import ScheduleView
from .sweeps import GuidanceSweep, SamplerCompare, SeedsAndPrompts, StepsCompare, Sweep

__all__ = ["ForwardExplorer", "GuidanceSweep", "LatentView", "SamplerCompare", "ScheduleView", "SeedsAndPrompts",
           "StepsCompare", "Sweep"]

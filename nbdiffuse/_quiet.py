"""Silence one harmless notice that transformers prints when diffusers' pipelines are imported.

diffusers imports CLIP image processors (for safety checkers nbdiffuse never uses); without
torchvision, transformers says it falls back to the PIL backend, in every notebook's output.
Only that message is dropped; everything else transformers logs still shows.
"""
import logging


class _TorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallback())

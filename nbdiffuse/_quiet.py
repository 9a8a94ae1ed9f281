"""Silence two harmless notices that diffusers' own calls cause, in every notebook that uses it.

- diffusers imports CLIP image processors (for safety checkers nbdiffuse never uses); without
  torchvision, transformers says it falls back to the PIL backend.
- Loading a hub id, diffusers passes huggingface_hub's retired `local_dir_use_symlinks` argument,
  and huggingface_hub warns that it is ignored: nothing the user did or can change.

Only these messages are dropped; everything else transformers logs and warns still shows.
"""
import logging
import warnings


class _TorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallback())
warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated",
                        category=UserWarning, module="huggingface_hub")

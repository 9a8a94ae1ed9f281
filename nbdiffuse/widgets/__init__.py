"""Jupyter widgets on top of nbdiffuse.core (which never imports them)."""
from .explorer import Explorer

__all__ = ["Explorer"]

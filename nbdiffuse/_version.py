"""The version of nbdiffuse (its own module, so the core can record it without importing the package)."""
__version__ = "0.1.0"

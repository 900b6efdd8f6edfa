"""evalrun: a Hydra-configured runner that evaluates diffusers pipelines."""

from evalrun.version import __version__

__all__ = ["__version__"]

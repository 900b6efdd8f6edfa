"""evalrun: a Hydra-configured runner that evaluates diffusers pipelines."""

__version__ = "0.1.0"

"""evalrun: a Hydra-configured runner that evaluates diffusers pipelines.

Python API (the CLI's code path; see ``evalrun.api``)::

    import evalrun
    evalrun.evaluate(["model=sd15", "scheduler=dpm"]).metrics
    evalrun.sweep(["scheduler=ddim,dpm", "seed=0,1,2"]).summary
    evalrun.load_sweep("outputs/multirun/...").summary

Metric objects for in-memory images: ``evalrun.metrics.create("fid", reference="real/")``.
"""

from evalrun.version import __version__

__all__ = ["__version__", "evaluate", "sweep", "load_sweep", "compose"]


def __getattr__(name: str):
    # The API imports Hydra and the runner: only when it is used, so `import evalrun` stays instant.
    if name in ("evaluate", "sweep", "load_sweep", "compose"):
        import evalrun.api as api

        return getattr(api, name)
    raise AttributeError(f"module 'evalrun' has no attribute {name!r}")

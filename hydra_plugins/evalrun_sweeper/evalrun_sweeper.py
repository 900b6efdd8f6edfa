"""``hydra/sweeper=evalrun`` (the default, conf/hydra/sweeper/evalrun.yaml): Hydra's basic sweeper,
whose jobs' configs come from :class:`evalrun.sweep_configs.SweepConfigLoader`.

Kept thin: Hydra imports every module under ``hydra_plugins`` when it scans for plugins, so this
one imports evalrun only once a sweep starts.
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext


class EvalrunSweeper(BasicSweeper):
    """The basic sweeper (``key=a,b`` lists, ``hydra.sweeper.params``, ``max_batch_size``); its check of
    each batch and the launcher it starts read job configs through evalrun's loader."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        from evalrun.sweep_configs import SweepConfigLoader

        loader = SweepConfigLoader(hydra_context.config_loader)
        super().setup(hydra_context=HydraContext(config_loader=loader, callbacks=hydra_context.callbacks),
                      task_function=task_function, config=config)

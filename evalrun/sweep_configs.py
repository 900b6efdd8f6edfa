"""Where a CLI sweep's job configs are made: :class:`SweepConfigLoader`, Hydra's config loader with
``load_sweep_config`` answered by :class:`evalrun.composition.JobComposer`'s rebuilds.

Hydra's multirun composes every job in full twice: the sweeper checks each batch by composing its
jobs, then the launcher composes each again (~75 ms each here, for a job that may sample in 200 ms).
The sweeper ``hydra/sweeper=evalrun`` (the default; hydra_plugins/evalrun_sweeper) hands its check
and its launcher this loader instead. A job's config is then the composition of its group choices,
made once per set of choices (or rebuilt from another set, leaf groups swapped) with the job's value
overrides applied, and Hydra's section completed as ``load_sweep_config`` completes it: the job's
overrides, its choices, its ``override_dirname``, the sweep's resolver cache (``${now:}``).

What the rebuilds do not cover (``hydra.*`` overrides in a job, a key given both as a group and a
value, anything that fails) goes to Hydra's own ``load_sweep_config``. Launchers that pickle the
loader to compose in another process (submitit) get Hydra's own. ``tests/test_sweep_configs.py``
checks every job of several sweeps against Hydra's ``load_sweep_config``, Hydra's section included.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from evalrun.composition import JobComposer

log = logging.getLogger(__name__)


class SweepJobComposer(JobComposer):
    """A JobComposer that composes through the launching Hydra's loader (its search path, primary
    config and ``hydra.*`` overrides) and keeps Hydra's section; a job it cannot rebuild gives None."""

    def __init__(self, loader: Any, config_name: str, hydra_overrides: Sequence[str]) -> None:
        super().__init__()
        self._loader, self._config_name, self._hydra_overrides = loader, config_name, list(hydra_overrides)

    def _hydra(self, overrides: Sequence[str], keep_hydra: bool):
        from hydra.types import RunMode

        everything = [*self._hydra_overrides, *overrides]
        return self._composed_by(self._loader, self._config_name, everything, True, lambda: self._loader.load_configuration(
            config_name=self._config_name, overrides=everything, run_mode=RunMode.RUN))

    def _in_full(self, job: Sequence[str]) -> None:
        return None  # Hydra's load_sweep_config composes it

    def _top_groups(self) -> set[str]:
        if self._files is None:  # before the first composition: the groups of the sweep's own search path
            _, self._files = self._loader._parse_overrides_and_create_caching_repo(self._config_name,
                                                                                   self._hydra_overrides)
        return super()._top_groups()


class SweepConfigLoader:
    """Hydra's config loader, but for ``load_sweep_config`` (see the module docstring)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._jobs: SweepJobComposer | None = None
        self.rebuilt = 0  # jobs answered by the rebuilds (the rest went to Hydra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __reduce__(self):
        return _plain, (self._loader,)  # another process composes only its own job: Hydra's loader does

    def load_sweep_config(self, master_config: Any, sweep_overrides: list[str]) -> Any:
        job = list(sweep_overrides)
        try:
            cfg = self._rebuilt(master_config, job)
        except Exception as exc:  # noqa: BLE001 - Hydra composes it (and reports a bad override its own way)
            log.debug("job %s composed by Hydra: %s", job, exc)
            cfg = None
        if cfg is None:
            return self._loader.load_sweep_config(master_config, job)
        self.rebuilt += 1
        return cfg

    def _rebuilt(self, master: Any, job: list[str]) -> Any:
        from hydra._internal.config_loader_impl import get_overrides_dirname
        from omegaconf import OmegaConf, open_dict

        if self._jobs is None:
            self._jobs = SweepJobComposer(self._loader, master.hydra.job.config_name,
                                          OmegaConf.to_container(master.hydra.overrides.hydra))
        cfg = self._jobs(job)
        if cfg is None:
            return None
        # What Hydra's composition writes into its section for this job's overrides (the choices
        # were set where the groups were composed or swapped).
        dirname = cfg.hydra.job.config.override_dirname
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = job
            cfg.hydra.job.override_dirname = get_overrides_dirname(
                overrides=[self._jobs._parsed(o) for o in job], kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master, to_config=cfg)  # as load_sweep_config: ${now:} stays the sweep's
        return cfg


def _plain(loader: Any) -> Any:
    return loader

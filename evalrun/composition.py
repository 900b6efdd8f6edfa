"""Where a job's config is composed: :func:`compose` (Hydra's own, for one run) and
:class:`JobComposer` (a sweep's jobs, each equal to ``compose(job)`` at a fraction of the cost).

Hydra composes in two steps: it expands the defaults list (the group choices ``scheduler=dpm``,
``prompts=parti``, ``metrics=[...]``) and merges every config in it, in order, which costs ~70 ms of
YAML parsing and OmegaConf merges; then it applies the value overrides (``seed=1``,
``model.path=...``), a few milliseconds. At 4 sampling steps on a small model a job samples in a
few hundred milliseconds, so composing each job with Hydra was a visible share of a sweep. The
composer therefore:

1. composes with Hydra once (the sweep's own config) and keeps Hydra's defaults list of it;
2. gives a job whose group choices differ from an already composed set only in *leaf* groups
   (an option file with no defaults list and the group's own package: schedulers, prompt sets,
   references, most models) the composed config with those groups' nodes rebuilt: the new option
   file merged, in defaults-list order, with what the other configs of the list write under that
   group (``config.yaml``'s own keys, an experiment's or protocol's ``@package _global_`` values);
3. applies the job's value overrides with Hydra's own code.

Anything else (a group with a defaults list of its own, ``+``/``~`` overrides, ``hydra.*``
overrides, a structured-config schema, a list of options) is composed in full by Hydra.
``tests/test_compose.py`` checks the result against Hydra's full composition, job by job. The CLI's
sweeps use the same rebuilds through Hydra's own loader (``evalrun/sweep_configs.py``).
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

NAME = re.compile(r"[\w\-]+")  # an option name (not a list, not null, not an interpolation)


def compose(overrides: Sequence[str] = (), hydra: bool = False):
    """The config ``evalrun OVERRIDES`` would run (packaged conf/, plus ``hydra.searchpath`` dirs);
    ``hydra=True`` keeps Hydra's own section (sweeper params of an experiment file, ...)."""
    from hydra import compose as hydra_compose

    import evalrun.__main__  # noqa: F401  (registers the resolvers the config uses)
    from evalrun.override_keys import override_list

    with packaged_hydra():
        return hydra_compose(config_name="config", overrides=override_list(overrides), return_hydra_config=hydra)


@contextlib.contextmanager
def packaged_hydra() -> Iterator[Any]:
    """Hydra initialised on the packaged conf/ while the block runs; a caller's own Hydra (a notebook that
    composes its own configs) is set aside and put back afterwards, never cleared."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    from evalrun.paths import CONF_DIR
    from evalrun.yaml_loader import readable_yaml_errors

    saved = Singleton._instances.pop(GlobalHydra, None)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"), readable_yaml_errors():
            yield GlobalHydra.instance()
    finally:
        if saved is not None:
            Singleton._instances[GlobalHydra] = saved


@dataclass
class _Composed:
    """A composed set of group choices: its config (Hydra's section removed) and Hydra's defaults list."""

    config: Any
    choices: dict[str, str]   # the composed part of the overrides, key -> value
    values: frozenset         # value overrides already applied to ``config`` (re-applied per job)
    defaults: list | None     # Hydra's ResultDefault entries, in merge order; None: no rebuilds from it


class JobComposer:
    def __init__(self) -> None:
        self._composed: dict[tuple[str, ...], _Composed] = {}
        self._groups: set[str] | None = None
        self._files: Any = None  # Hydra's repository of config files, read by the rebuilds
        self._parses: dict[str, Any] = {}
        self.hydra_compositions = 0

    # -- the sweep's own config ------------------------------------------------------------------
    def sweep_config(self, overrides: Sequence[str]):
        """``compose(overrides, hydra=True)`` (the sweeper params live there), kept as the first base
        the jobs' configs are rebuilt from."""
        cfg, defaults = self._hydra(overrides, keep_hydra=True)
        values = [o for o in overrides if self._is_value(o)]
        part = tuple(o for o in overrides if o not in values)
        job_cfg = _copied(cfg)
        _drop_hydra(job_cfg)
        self._composed.setdefault(part, _Composed(job_cfg, _as_dict(part), frozenset(values), defaults))
        return cfg

    # -- one job -----------------------------------------------------------------------------------
    def __call__(self, job: Sequence[str]) -> Any:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        if any(o.split("=", 1)[0].lstrip("+~").startswith("hydra") for o in job):
            return self._in_full(job)  # may add config dirs and groups: Hydra's own path
        values = [o for o in job if self._is_value(o)]
        part = tuple(o for o in job if o not in values)
        keys = {o.split("=", 1)[0] for o in values}
        added = {o.split("=", 1)[0].lstrip("+~") for o in part if o.startswith(("+", "~"))}  # applied in order
        if keys & {o.split("=", 1)[0].lstrip("+~") for o in part} or any(
                a.startswith(b + ".") or b.startswith(a + ".") for a in keys for b in added):
            return self._in_full(job)  # one key (or a parent and its child) both ways: keep Hydra's own order
        base = self._composed.get(part)
        if base is None or not base.values <= set(values):
            from evalrun.yaml_loader import readable_yaml_errors

            with readable_yaml_errors():  # the option files the rebuild reads
                base = self._rebuilt(part, set(values)) or self._full(part)
            self._composed[part] = base
        cfg = _copied(base.config)
        ConfigLoaderImpl._apply_overrides_to_config([self._parsed(v) for v in values], cfg)
        return cfg

    def _in_full(self, job: Sequence[str]):
        """A job the rebuilds do not cover, composed by Hydra."""
        self.hydra_compositions += 1
        return compose(job)

    def _parsed(self, override: str):
        """Hydra's parse of one value override (an ANTLR parse: remembered, jobs repeat most of them)."""
        if override not in self._parses:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            self._parses[override] = OverridesParser.create().parse_overrides([override])[0]
        return self._parses[override]

    def _full(self, part: tuple[str, ...]) -> _Composed:
        cfg, defaults = self._hydra(part, keep_hydra=False)
        return _Composed(cfg, _as_dict(part), frozenset(), defaults)

    def _hydra(self, overrides: Sequence[str], keep_hydra: bool):
        """Hydra's composition, and the defaults list it was built from (None if not seen)."""
        from hydra import compose as hydra_compose

        import evalrun.__main__  # noqa: F401  (registers the resolvers the config uses)

        with packaged_hydra() as global_hydra:
            return self._composed_by(
                global_hydra.hydra.config_loader, "config", overrides, keep_hydra,
                lambda: hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=keep_hydra))

    def _composed_by(self, loader: Any, config_name: str, overrides: Sequence[str], keep_hydra: bool, composition):
        """``composition()``'s config (made by ``loader``), the defaults list it was built from (None if not
        seen), and the file repository the rebuilds read."""
        self.hydra_compositions += 1
        with _capturing_defaults_lists() as captured:
            cfg = composition()
        try:
            # The rebuilds read files from a repository of their own: composition re-parents the
            # nodes it loads, so the one Hydra has just used is not a faithful copy of the files.
            # Named, the primary config is loaded once more only to read hydra.searchpath (10 ms
            # of YAML): skipped when the composed config shows none was set.
            primary = None if keep_hydra and not cfg.hydra.get("searchpath") else config_name
            _, self._files = loader._parse_overrides_and_create_caching_repo(primary, list(overrides))
        except Exception:  # noqa: BLE001 - no rebuilds from this composition; Hydra's result stands
            captured.clear()
        return cfg, (captured[-1].defaults if len(captured) == 1 else None)

    # -- rebuilding leaf groups -----------------------------------------------------------------
    def _rebuilt(self, part: tuple[str, ...], values: set[str]) -> _Composed | None:
        """The config of ``part`` from a composed set that differs from it in leaf group choices only."""
        choices = _as_dict(part)
        for base in self._composed.values():
            if base.defaults is None or not base.values <= values or set(base.choices) - set(choices):
                continue
            changed = {k: v for k, v in choices.items() if base.choices.get(k) != v}
            try:
                rebuilt = self._swap(base, changed, part)
            except Exception:  # noqa: BLE001 - anything unexpected: Hydra composes it in full
                rebuilt = None
            if rebuilt is not None:
                config, defaults = rebuilt
                return _Composed(config, choices, base.values, defaults)
        return None

    def _swap(self, base: _Composed, changed: dict[str, str], part: tuple[str, ...]):
        from omegaconf import DictConfig, OmegaConf, open_dict

        if not changed or self._files is None:
            return None
        groups = self._top_groups()
        touched = [o.split("=", 1)[0].lstrip("+~") for o in part if o.startswith(("+", "~"))]
        defaults = list(base.defaults)
        for group, option in changed.items():
            if group not in groups or not NAME.fullmatch(option) or any(t.startswith(group) for t in touched):
                return None
            at = [i for i, d in enumerate(defaults) if d.package == group and d.parent == "config"
                  and (d.config_path or "").startswith(group + "/")]
            if len(at) != 1 or any(d.parent == defaults[at[0]].config_path for d in defaults):
                return None
            path = f"{group}/{option}"
            if not self._is_leaf(path) or not self._is_leaf(defaults[at[0]].config_path):
                return None
            defaults[at[0]] = copy.copy(defaults[at[0]])
            defaults[at[0]].config_path = path
        config = _copied(base.config)
        for group in changed:
            pieces = []
            for entry in defaults:
                piece = self._contribution(entry, group)
                if piece is None:
                    continue
                if not isinstance(piece, DictConfig) or piece._is_none() or piece._is_missing() \
                        or piece._is_interpolation():
                    return None
                pieces.append(piece)
            if not pieces:
                return None
            with open_dict(config):  # merge copies: the repository's nodes are never re-parented
                config[group] = OmegaConf.merge(*pieces)
            if "hydra" in config:  # a config that keeps Hydra's section: its record of the choices
                config.hydra.runtime.choices[group] = changed[group]
        return config, defaults

    def _is_leaf(self, path: str) -> bool:
        """An option file with no defaults list, the group's own package and no schema."""
        found = self._files.load_config(path)
        if found is None or found.header.get("package") not in (None, "_group_"):
            return False
        if getattr(found, "defaults_list", None) or self._files.get_schema_source().exists(path):
            return False
        return True

    def _contribution(self, entry: Any, group: str):
        """What one defaults-list entry writes under ``group`` (None: nothing)."""
        package = entry.package or ""
        if package == "hydra" or package.startswith("hydra."):
            return None
        if package != group and package != "" and not package.startswith(group + "."):
            return None
        found = self._files.load_config(entry.config_path)
        if found is None:
            raise LookupError(entry.config_path)
        if package == group:
            return found.config
        if package == "":
            return found.config.get(group) if group in found.config else None
        from omegaconf import OmegaConf

        placed = OmegaConf.create()
        OmegaConf.update(placed, package, copy.deepcopy(found.config), merge=False)
        return placed[group]

    # -- which overrides are values ----------------------------------------------------------------
    def _is_value(self, override: str) -> bool:
        key = override.split("=", 1)[0]
        if key.startswith(("+", "~", "hydra")) or "@" in key or "/" in key:
            return False
        if "." in key:  # a config path: group names use "/", never "."
            return True
        return key not in self._top_groups()

    def _top_groups(self) -> set[str]:
        """The top-level config groups: from the files of the last composition, else of the packaged conf/."""
        if self._groups is None and self._files is not None:
            from hydra.core.object_type import ObjectType

            self._groups = set(self._files.get_group_options("", results_filter=ObjectType.GROUP))
        elif self._groups is None:
            with packaged_hydra() as global_hydra:
                self._groups = set(global_hydra.config_loader().list_groups(""))
        return self._groups


@contextlib.contextmanager
def _capturing_defaults_lists() -> Iterator[list]:
    """Hydra's defaults lists made inside the block (the one its composition builds, not built twice)."""
    import hydra._internal.config_loader_impl as loader_impl

    captured: list = []
    original = getattr(loader_impl, "create_defaults_list", None)
    if original is None:  # another Hydra than 1.3: nothing captured, every set of choices composed by Hydra
        yield captured
        return

    def capture(*args: Any, **kwargs: Any):
        result = original(*args, **kwargs)
        captured.append(result)
        return result

    loader_impl.create_defaults_list = capture
    try:
        yield captured
    finally:
        loader_impl.create_defaults_list = original


def _copied(cfg: Any) -> Any:
    """A copy of a composed config for one job: through pickle, a faithful copy of an OmegaConf tree (values,
    flags, metadata, parents) in a third of deepcopy's time (2.4 ms a job here)."""
    import pickle

    return pickle.loads(pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))


def _as_dict(part: Sequence[str]) -> dict[str, str]:
    return dict(o.split("=", 1) if "=" in o else (o, "") for o in part)


def _drop_hydra(cfg: Any) -> None:
    from omegaconf import open_dict, read_write

    if "hydra" in cfg:
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]

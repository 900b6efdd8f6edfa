"""Misspelt keys in overrides, answered in one line that names the fix.

Hydra refuses ``stpes=10`` in several lines that suggest ``+stpes=10``; that addition then ran with the
old steps, since nothing reads ``stpes``. Two checks, against the keys the packaged configs define
(``config.yaml``, every option file of a group, the ``@package _global_`` files that set keys under
groups, and what ``config.yaml`` reads with ``oc.select``):

- :func:`check_command_line`, before Hydra composes: an unknown metric name, a value override whose
  key no packaged config has but which is a near-spelling of one that does (``stpes=10``: did you mean
  ``steps=10``?), and one whose key no packaged config has at all (``model.foo=1``, a setting of a metric
  that is not in the ``metrics=[...]`` list given). With config dirs of your own, keys are left to Hydra.
- :func:`evalrun.added_keys.check_added_keys`, once composed: a ``+key=value`` that adds a key nothing
  reads.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalrun.config_keys import (config_yaml, group_keys, metric_keys, not_read_by_option,
                                 top_level_keys, yaml_mapping)
from evalrun.errors import ConfigError
from evalrun.hydra_flags import groups, hydra_problem, nearest, no_such_option, option_in
from evalrun.paths import CONF_DIR

# Groups whose keys are a fixed set. Deeper keys are open mappings (scheduler.kwargs, model.call_kwargs)
# and metric settings are checked by the registry.
CLOSED_GROUPS = ("model", "prompts", "paths", "reference", "protocol", "scheduler")
# Groups config.yaml lists as optional: Hydra skips a missing option of these without a word, so
# experiment=scheduler_comparision would run the default config.
OPTIONAL_GROUPS = ("experiment", "debug")
_MORE_CONFIG = ("hydra.searchpath", "+hydra.searchpath", "--config-dir", "-cd", "--config-path", "-cp", "--config-name",
                "-cn")
_METRIC_LIST = re.compile(r"\+?metrics=\[?([^\]]*)\]?")


def override_list(overrides: Sequence[str]) -> list[str]:
    """The Python API's overrides as a list of strings; a bare string (read a character at a time by Hydra)
    or anything else is refused in one line."""
    items = list(overrides) if isinstance(overrides, Iterable) and not isinstance(overrides, (str, bytes)) else None
    if items is None or not all(isinstance(o, str) for o in items):
        shown = repr(overrides) if len(repr(overrides)) < 80 else repr(overrides)[:77] + "..."
        raise ConfigError(f"overrides must be a list of strings, as on the command line (['model=sd15', "
                          f"'seed=0,1']); got {shown}")
    return items


def check_command_line(argv: Sequence[str], cli: bool = True) -> str | None:
    """The first misspelling among the command line's overrides, as a message (None: leave it to Hydra).
    ``cli=False``: the Python API's overrides (no ``-m``: its sweep takes value lists as they are)."""
    valid_metrics = sorted(p.stem for p in (CONF_DIR / "metrics").glob("*.yaml"))
    if any(a in ("-sc", "--shell-completion") or a.startswith("--shell-completion=") for a in argv):
        return None  # -sc install=bash / query=bash: Hydra's completion, not an override
    chosen = _choices(argv)
    problem = hydra_problem(argv, cli)
    if problem:
        return problem
    own_configs = any(a.startswith(_MORE_CONFIG) for a in argv)  # config dirs of your own: checked once composed
    if not own_configs:
        problem = _unknown_option(argv)  # experiment=/debug= too: Hydra would run without a missing one
        if problem:
            return problem
    for arg in argv:
        match = _METRIC_LIST.fullmatch(arg)
        if match and "(" in match.group(1):  # glob(clip_*), choice(...): Hydra's sweep grammar, for Hydra
            continue
        if match:  # Hydra says "Could not load" for an unknown option in a list, without the valid ones
            unknown = [n.strip() for n in match.group(1).split(",") if n.strip() and n.strip() not in valid_metrics]
            if unknown:
                return f"unknown metric(s) {', '.join(unknown)}; valid: {', '.join(valid_metrics)}"
            continue
        if arg.startswith("~"):
            problem = _deleted(arg)
            if problem:
                return problem
            continue
        if arg.startswith(("-", "+")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        parts = key.split(".")
        if parts[0] == "hydra" or not all(re.fullmatch(r"\w+", p) for p in parts):
            continue
        if own_configs and len(parts) > 1 and parts[0] in CLOSED_GROUPS:
            continue  # a preset of your own may define keys the packaged ones do not (Hydra refuses a real typo)
        fix = _misspelt(parts, chosen)
        if fix is not None:
            return f"{key} is not a key of the config; did you mean {fix}={value}?"
        problem = None if own_configs else _not_in_config(parts, value, argv, valid_metrics)
        if problem:
            return problem
        if parts[:2] == ["scheduler", "kwargs"] and len(parts) == 3 and not own_configs:
            problem = _kwarg_not_set(parts[2], value, argv, chosen)
            if problem:
                return problem
        if len(parts) == 2 and not own_configs and chosen.get("experiment") in (None, "None", "null") \
                and chosen.get("protocol") in (None, "none"):  # an experiment or a protocol may choose the option
            given = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith(f"{parts[0]}=")), None)
            for option in given or [chosen.get(parts[0])]:
                problem = not_read_by_option(parts[0], str(option), parts[1], arg)
                if problem:
                    return problem
    return None


def _deleted(arg: str) -> str | None:
    """``~seed``, ``~model.height``: a key evalrun reads, deleted (a traceback once the run reads it)."""
    key = arg[1:].split("=", 1)[0]
    parts = key.split(".")
    if parts[0] == "hydra" or key in groups():
        return None  # Hydra's own, or a defaults-list entry (~experiment)
    known = (len(parts) == 1 and key in top_level_keys()) or \
        (len(parts) == 2 and parts[0] in CLOSED_GROUPS and parts[1] in group_keys(parts[0]))
    return f"{arg} deletes {key}, which evalrun reads; set a value instead ({key}=...)" if known else None


def _kwarg_not_set(name: str, value: str, argv: Sequence[str], chosen: dict[str, str]) -> str | None:
    """``scheduler.kwargs.use_karras_sigmas=true`` where the chosen scheduler option's kwargs do not hold the
    key: Hydra refuses it in several lines (the key is not in the struct). ``++`` adds or sets it."""
    if chosen.get("experiment") not in (None, "None", "null"):
        return None  # an experiment may choose the schedulers: left to Hydra
    options = next((a.split("=", 1)[1].split(",") for a in argv if a.startswith("scheduler=")), [chosen.get("scheduler")])
    for option in options:
        path = CONF_DIR / "scheduler" / f"{option}.yaml"
        if path.is_file() and name not in (yaml_mapping(path).get("kwargs") or {}):
            return (f"scheduler.kwargs.{name}={value}: scheduler={option} does not set {name} in its kwargs, so Hydra "
                    f"cannot override it; add it with ++scheduler.kwargs.{name}={value}")
    return None


def _unknown_option(argv: Sequence[str]) -> str | None:
    """A group option (``model=sd51``, or one of a sweep's ``scheduler=dpm,eular``) that no packaged config
    has: Hydra answers with a page listing the options and a pointer to HYDRA_FULL_ERROR."""
    known = groups() - {"metrics"}  # metric lists are checked above, with the names they may hold
    for arg in argv:
        match = re.fullmatch(r"(\w+)=([\w\-.+]+(?:,[\w\-.+]+)*)", arg)  # plain names only: not glob(), range(), ...
        if not match or match.group(1) not in known:
            continue
        group = match.group(1)
        for option in match.group(2).split(","):
            if option not in ("None", "null") and not option_in(CONF_DIR, group, option):
                return no_such_option(group, option)
    return None


def check_optional_choices(hydra_cfg: Any) -> None:
    """Refuse an ``experiment=``/``debug=`` option that no config dir of the composition has (Hydra
    composed without it): from the composed config's own record of its choices and config sources."""
    from importlib import resources

    choices, sources = hydra_cfg.runtime.choices, hydra_cfg.runtime.config_sources
    for group in OPTIONAL_GROUPS:
        option = choices.get(group)
        if option in (None, "None", "null"):
            continue
        roots = []
        for source in sources:
            try:
                if source.schema == "file":
                    roots.append(Path(source.path))
                elif source.schema == "pkg":
                    roots.append(resources.files(source.path.replace("/", ".")))
            except (ModuleNotFoundError, TypeError, ValueError):
                return  # a source that cannot be listed: leave it to Hydra
        if not any(option_in(root, group, str(option)) for root in roots):
            raise ConfigError(no_such_option(group, str(option)))


def _default_metric_list(chosen: dict[str, str]) -> str | None:
    """The metrics a run lists when the command line names none: the model preset's (edit models override
    config.yaml's), as ``a,b``; None where an experiment or protocol may set them (left to Hydra)."""
    if any(chosen.get(g) not in (None, "None", "null", "none") for g in ("experiment", "protocol")):
        return None
    for path in (CONF_DIR / "model" / f"{chosen.get('model')}.yaml", CONF_DIR / "config.yaml"):
        entries = yaml_mapping(path).get("defaults") if path.is_file() else None
        for entry in entries if isinstance(entries, list) else []:
            group = next(iter(entry), "") if isinstance(entry, dict) else ""  # "override /metrics@_global_.metrics"
            names = entry[group] if group.removeprefix("override ").lstrip("/").startswith("metrics") else None
            if isinstance(names, list):
                return ",".join(map(str, names))
    return None


def _choices(argv: Sequence[str]) -> dict[str, str]:
    """Group options chosen: config.yaml's defaults, then the command line's (``model=sd15``)."""
    top, _ = config_yaml()
    chosen = {k: str(v) for entry in top.get("defaults") or [] if isinstance(entry, dict) for k, v in entry.items()}
    chosen.update(a.split("=", 1) for a in argv if re.fullmatch(r"\w+=[\w\-]+", a))
    return chosen


def _in_chosen(group: str, name: str, chosen: dict[str, str]) -> bool:
    """Whether the chosen option file of ``group`` defines ``name`` (one file read, the usual case)."""
    path = CONF_DIR / group / f"{chosen.get(group)}.yaml"
    return path.is_file() and name in yaml_mapping(path)


def _misspelt(parts: list[str], chosen: dict[str, str]) -> str | None:
    """The known key ``parts`` is a near-spelling of (None: known, or far from every known key)."""
    if len(parts) == 1:
        if parts[0] in top_level_keys(everywhere=False) or parts[0] in top_level_keys():
            return None
        return nearest(parts[0], top_level_keys(), 0.6)
    group, name = parts[:2]
    if group == "scheduler" and name == "kwargs" and len(parts) == 3:  # an open mapping: near-spellings only
        return near_scheduler_kwarg(parts[2])
    if group == "metrics" and len(parts) >= 3:
        known = metric_keys(name)
        if known is None or parts[2] in known:
            return None
        near = nearest(parts[2], known, 0.75)
        return ".".join(["metrics", name, near, *parts[3:]]) if near else None
    if group not in CLOSED_GROUPS or name in group_keys(group, everywhere=False) or _in_chosen(group, name, chosen) \
            or name in group_keys(group):
        return None
    near = nearest(name, group_keys(group), 0.75)
    return ".".join([group, near, *parts[2:]]) if near else None


@functools.lru_cache(maxsize=None)
def scheduler_kwargs() -> frozenset[str]:
    """The scheduler config keys the packaged scheduler options set (shift, use_karras_sigmas, ...)."""
    return frozenset(k for f in (CONF_DIR / "scheduler").glob("*.yaml") for k in (yaml_mapping(f).get("kwargs") or {}))


def near_scheduler_kwarg(name: str) -> str | None:
    """``scheduler.kwargs.<near>`` when ``name`` misspells a key the packaged options use; else None (a
    scheduler config key of its own: diffusers' from_config takes it)."""
    if name in scheduler_kwargs():
        return None
    near = nearest(name, scheduler_kwargs(), 0.75)
    return f"scheduler.kwargs.{near}" if near else None


def _not_in_config(parts: list[str], value: str, argv: Sequence[str],
                   valid_metrics: list[str]) -> str | None:
    """A key no packaged config has, far from every known one (near ones are misspellings, above): Hydra
    refuses it in a page ("Could not override ... not in struct") that suggests adding it with ``+``."""
    key, add = ".".join(parts), f"; a key of your own is added with +{'.'.join(parts)}={value}"
    group, name = parts[0], (parts[1] if len(parts) > 1 else None)
    if name is None:
        return None if group in top_level_keys() else f"{key} is not a key of the config (evalrun --help lists " \
                                                      f"them){add}"
    if group == "metrics" and len(parts) >= 3:
        known = metric_keys(name)
        if known is None:
            return f"{key}: there is no metric {name!r}; valid: {', '.join(valid_metrics)}"
        if parts[2] not in known:
            return f"{key}: metric {name} has no setting {parts[2]!r}; its settings: {', '.join(sorted(known))}"
        listed = next((m.group(1) for a in argv if a.startswith("metrics=") and "(" not in a and "],[" not in a
                       and (m := _METRIC_LIST.fullmatch(a))), None)
        sets_list = any(a.split("=", 1)[0].lstrip("+~") in ("metrics", "hydra.sweeper.params.metrics") for a in argv)
        if listed is None and not sets_list:  # no list anywhere on the command line: the preset's or config.yaml's
            listed = _default_metric_list(_choices(argv))
        names = [n.strip() for n in (listed or "").split(",") if n.strip()]
        if listed is not None and name not in names:  # the list given replaces every other: no metrics.<name> then
            return (f"{key}: {name} is not among this run's metrics ({', '.join(names) or 'none'}); add it: "
                    f"metrics=[{','.join([*names, name])}]")
        return None
    if group in CLOSED_GROUPS and name not in group_keys(group):
        keys = ", ".join(sorted(group_keys(group) - {"defaults"}))
        return f"{key} is not a key of any {group} config (they have {keys}){add}"
    return None

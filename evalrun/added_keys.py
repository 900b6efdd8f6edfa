"""``+key=value`` overrides that add a key nothing reads, refused once the config is composed (the
command line's misspellings are answered before Hydra runs: :mod:`evalrun.override_keys`)."""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError
from evalrun.hydra_flags import nearest
from evalrun.config_keys import OPTION_FIELD, group_keys, metric_keys, not_read_by_option, top_level_keys
from evalrun.hydra_flags import groups
from evalrun.override_keys import CLOSED_GROUPS, near_scheduler_kwarg


def check_added_keys(overrides: Any, cfg: Any) -> None:
    """Refuse a ``+key=value`` (or ``++key=value``) override that adds a key nothing reads: any new top-level
    key, and a new key of a closed group (``+model.pathh``) that is a near-spelling of a key that group's
    configs have."""
    for override in overrides or ():
        override = str(override)
        if not override.startswith("+") or "=" not in override:
            continue
        key, value = override.lstrip("+").split("=", 1)
        parts = key.split(".")
        if parts[0] == "hydra" or "/" in key or "@" in key or (len(parts) == 1 and key in groups()):
            continue  # Hydra's own, or +group=option: a config group Hydra has just added
        if override.startswith("++") and len(parts) == 1 and key in top_level_keys():
            continue  # ++steps=3: sets a key that is there
        if len(parts) == 1:
            known = top_level_keys() - {key}
            near = nearest(key, known, 0.6)
            hint = f"did you mean {near}={value}?" if near else f"the top-level keys are {', '.join(sorted(known))}"
            raise ConfigError(f"{override} adds a top-level key evalrun never reads; {hint}")
        group, name = parts[:2]
        metrics = cfg.get("metrics") or {}
        if group == "metrics" and len(parts) >= 3 and (metric_keys(name) or set()) - set(metrics.get(name) or {}):
            listed = [str(m) for m in metrics if m != name]  # what + made is all the metric has: not listed
            raise ConfigError(f"{override} adds a setting of {name}, which is not among this run's metrics "
                              f"({', '.join(listed) or 'none'}): it would run {name} half-configured; list it and set "
                              f"it without +: metrics=[{','.join([*listed, name])}] {key}={value}")
        if group == "scheduler" and name == "kwargs" and len(parts) == 3 and near_scheduler_kwarg(parts[2]):
            raise ConfigError(f"{override} adds scheduler.kwargs.{parts[2]}, which no scheduler option uses; "
                              f"did you mean {near_scheduler_kwarg(parts[2])}={value}?")
        chosen = (cfg.get(group) or {}).get(OPTION_FIELD.get(group, "")) if len(parts) == 2 else None
        problem = not_read_by_option(group, str(chosen), name, override) if chosen is not None else None
        if problem:  # +prompts.path= with prompts=doc: Hydra's fix for prompts.path=, which ran the doc prompts
            raise ConfigError(problem)
        if group not in CLOSED_GROUPS or name in group_keys(group):
            continue
        near = nearest(name, group_keys(group) | ({str(k) for k in (cfg.get(group) or {}).keys()} - {name}), 0.75)
        if near:
            fix = ("+" if len(parts) > 2 else "") + ".".join([group, near, *parts[2:]])
            raise ConfigError(f"{override} adds {group}.{name}, which no {group} config has; "
                              f"did you mean {fix}={value}?")

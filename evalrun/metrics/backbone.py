"""One backbone setting for every distribution metric: ``feature_extractor`` and its options, turned into
the registered extractor's constructor options (checked before anything loads).

    metrics.fd.feature_extractor=inception|dinov2|clip|torchscript|python
    metrics.fd.feature_extractor_path=...     weights / model folder / TorchScript file
    metrics.fd.resize=...                     torchscript / python only: the backbone's input size
    metrics.fd.feature_extractor_options={...} anything else the extractor takes (dinov2: pos_embedding)

``feature_extractor`` may also be a ``_target_`` mapping (``{_target_: pkg.mod.Class, arg: 1}``):
the Python-class extractor with those keyword arguments.
"""

from __future__ import annotations

from typing import Any

from evalrun.errors import ConfigError

RESIZABLE = ("torchscript", "python")


def backbone(metric: str, feature_extractor: Any, path: str | None = None, weights_sha256: str = "official",
             target: str | None = None, kwargs: dict | None = None, resize: Any = None, batch_size: int | None = None,
             options: dict | None = None) -> tuple[str, dict[str, Any]]:
    """(extractor name, constructor options) for ``metrics.<metric>``'s backbone settings."""
    if isinstance(feature_extractor, dict):  # {_target_: pkg.mod.Class, **kwargs}
        spec = dict(feature_extractor)
        if "_target_" not in spec:
            raise ConfigError(f"metrics.{metric}.feature_extractor: a mapping needs a _target_ (pkg.module.Class)")
        target, kwargs, feature_extractor = spec.pop("_target_"), {**spec, **(kwargs or {})}, "python"
    name = str(feature_extractor)
    _check_early(metric, name, path, target)
    out: dict[str, Any] = {}
    if batch_size is not None:
        out["batch_size"] = batch_size  # checked by ExtractorMetric
    if name == "python":
        out.update(target=target, kwargs=dict(kwargs or {}), key=f"metrics.{metric}.feature_extractor_target")
    elif target is not None or kwargs:
        raise ConfigError(f"metrics.{metric}.feature_extractor_target/_kwargs apply to feature_extractor=python, "
                          f"not {name}")
    else:
        out["key"] = f"metrics.{metric}.feature_extractor_path"
        if path is not None:
            out["path"] = path
    if name == "inception":
        out["weights_sha256"] = weights_sha256
    if resize is not None:
        if name not in RESIZABLE:
            raise ConfigError(f"metrics.{metric}.resize applies to your own backbone ({', '.join(RESIZABLE)}); "
                              f"{name} resizes as its reference code does")
        out["resize"] = resize
    out.update(options or {})
    return name, out


def _check_early(metric: str, name: str, path: str | None, target: str | None) -> None:
    """What can be checked without importing torch: a user backbone's file or class is named."""
    from pathlib import Path

    from evalrun.metrics.features import EXTRACTORS, is_known
    from evalrun.plugins import check_findable, is_import_path

    if not is_known(name):
        raise ConfigError(f"metrics.{metric}.feature_extractor={name!r}; valid: {', '.join(sorted(EXTRACTORS))}, "
                          f"package.module:Class (a FeatureExtractor of your own) or a {{_target_: pkg.module.Class}} "
                          f"mapping (an nn.Module)")
    if is_import_path(name):
        check_findable(name, f"metrics.{metric}.feature_extractor")
    if name == "torchscript" and (path in (None, "", "???") or not Path(str(path)).expanduser().is_file()):
        raise ConfigError(f"metrics.{metric}.feature_extractor=torchscript needs metrics.{metric}.feature_extractor_path="
                          f"FILE, a TorchScript file (torch.jit.script(model).save(FILE)); got {path!r}")
    if name == "python" and not target:
        raise ConfigError(f"metrics.{metric}.feature_extractor=python needs metrics.{metric}.feature_extractor_target="
                          f"pkg.module.Class")


# What backbone() itself puts in an extractor's options; anything else came from feature_extractor_options.
_OWN_OPTIONS = {"batch_size", "target", "kwargs", "key", "path", "weights_sha256", "resize"}


def describe(name: str, options: dict[str, Any]) -> str:
    """The backbone as a result column value (``python:pkg.mod.Class`` for a class), with its constructor
    arguments, resize and ``feature_extractor_options`` (dinov2's ``pos_embedding``) when set: a sweep over
    them is never averaged as seeds of one configuration."""
    import json

    text = f"python:{options.get('target')}" if name == "python" else name
    given = {k: v for k, v in options.items() if k not in _OWN_OPTIONS}
    extras = ([json.dumps(options["kwargs"], sort_keys=True, default=str)] if options.get("kwargs") else []) + \
        ([f"resize={options['resize']}"] if options.get("resize") is not None else []) + \
        ([json.dumps(given, sort_keys=True, default=str)] if given else [])
    return f"{text} [{'; '.join(extras)}]" if extras else text

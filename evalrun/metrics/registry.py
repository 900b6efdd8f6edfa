"""Metric names -> classes, imported lazily so a run loads only what it scores.

The names are the files of ``conf/metrics/``; a test checks the two lists agree.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from evalrun.errors import ConfigError, in_api_words
from evalrun.metrics.base import Metric, MetricContext
from evalrun.metrics.settings import setting_seed

# name -> "module:Class". Lazy strings keep validation light (metric modules import no torch at
# module level) and let optional dependencies fail only when their metric is asked for.
METRICS: dict[str, str] = {
    "clip_score": "evalrun.metrics.clip_score:CLIPScore",
    "clip_directional": "evalrun.metrics.clip_edit:CLIPDirectionalSimilarity",
    "clip_image_similarity": "evalrun.metrics.clip_edit:CLIPImageSimilarity",
    "fid": "evalrun.metrics.fid:FID",
    "kid": "evalrun.metrics.kid:KID",
    "inception_score": "evalrun.metrics.inception_score:InceptionScore",
    "cmmd": "evalrun.metrics.cmmd:CMMD",
    "fd": "evalrun.metrics.fd:FD",
    "fd_dinov2": "evalrun.metrics.fd:FDDINOv2",
    "sfid": "evalrun.metrics.fd:SFID",
    "prdc": "evalrun.metrics.prdc:PRDC",
    "adm": "evalrun.metrics.adm:ADMPrecisionRecall",
    "fid_inf": "evalrun.metrics.fid_inf:FIDInfinity",
    "pick_score": "evalrun.metrics.preference_score:PickScoreMetric",
    "hps": "evalrun.metrics.preference_score:HPSMetric",
    "image_reward": "evalrun.metrics.preference_score:ImageRewardMetric",
    "diversity": "evalrun.metrics.diversity:Diversity",
}


def metric_class(name: str) -> type[Metric]:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}")
    module, cls = METRICS[name].split(":")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:  # the entry names no module; an import error inside one is its own
        if exc.name is None or not module.startswith(exc.name):
            raise
        raise ConfigError(f"metric {name!r} is registered as {METRICS[name]!r}, which cannot be imported ({exc}); fix "
                          f"the entry in evalrun.metrics.registry.METRICS or put its package on the Python path") from None
    found = getattr(imported, cls, None)
    if found is None:
        raise ConfigError(f"metric {name!r} is registered as {METRICS[name]!r}, but {module} has no {cls}; fix the "
                          f"entry in evalrun.metrics.registry.METRICS")
    if inspect.isabstract(found):
        missing = ", ".join(sorted(getattr(found, "__abstractmethods__", ())))
        raise ConfigError(f"metric {name!r} ({METRICS[name]}) does not implement {missing}; a Metric defines update "
                          f"and compute (evalrun/metrics/base.py)")
    return found


def build_metric(name: str, settings: Mapping[str, Any] | None, context: MetricContext) -> Metric:
    """Instantiate metric ``name`` with its config ``settings`` (cheap: models load in ``load``);
    unknown keys and invalid values name the key and the valid ones."""
    cls = metric_class(name)
    settings = dict(settings or {})
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "context")]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ConfigError(f"metric {name!r} has no setting(s) {', '.join(unknown)}; valid: {', '.join(allowed)}")
    try:
        return cls(context=context, **settings)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. scale=-1, subsets=abc: a setting, not a bug
        raise ConfigError(f"metric {name!r}: invalid settings {settings}: {exc}") from None


def create(name: str, reference: Any = None, device: Any = "cpu", seed: int = 0, cache_dir: Any = None,
           **settings: Any) -> Metric:
    """A metric for images in memory (Python API): ``reference`` is a folder path, an ``.npz`` path or a
    ``reference`` config dict; settings as in ``conf/metrics/<name>.yaml``. Feed it with ``add(images)``."""
    from pathlib import Path

    if isinstance(reference, (str, Path)):
        reference = {"kind": "npz" if str(reference).endswith(".npz") else "folder", "path": str(reference)}
    with in_api_words(name):  # its keyword arguments, not the config keys the runner's messages name
        setting_seed(name, "seed", seed, 0)  # checked here: the run's would have been, KID's subsets failed late
        if str(device).startswith("cuda"):  # one line for cuda without a GPU, not torch's driver message
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu")
        metric = build_metric(name, settings, MetricContext(device=device, reference=reference, seed=seed,
                                                            cache_dir=cache_dir))
    metric.api = True
    return metric


def _constructor(name: str, class_name: str):
    def make(reference: Any = None, device: Any = "cpu", seed: int = 0, cache_dir: Any = None, **settings: Any) -> Metric:
        return create(name, reference, device, seed, cache_dir, **settings)

    make.__name__ = make.__qualname__ = class_name
    make.__doc__ = (f"The ``{name}`` metric for images in memory, torchmetrics style: ``m = {class_name}(...)``, "
                    f"``m.update(images)`` (repeatable), ``m.compute().values``. Settings as in conf/metrics/{name}.yaml.")
    return make


# torchmetrics-style names for notebooks: evalrun.metrics.FID(reference="real/").update(images)
FID = _constructor("fid", "FID")
KID = _constructor("kid", "KID")
InceptionScore = _constructor("inception_score", "InceptionScore")
CMMD = _constructor("cmmd", "CMMD")
FD = _constructor("fd", "FD")
FDDINOv2 = _constructor("fd_dinov2", "FDDINOv2")
SFID = _constructor("sfid", "SFID")
PRDC = _constructor("prdc", "PRDC")
ADMPrecisionRecall = _constructor("adm", "ADMPrecisionRecall")
FIDInfinity = _constructor("fid_inf", "FIDInfinity")
CLIPScore = _constructor("clip_score", "CLIPScore")
CLIPDirectionalSimilarity = _constructor("clip_directional", "CLIPDirectionalSimilarity")
CLIPImageSimilarity = _constructor("clip_image_similarity", "CLIPImageSimilarity")
PickScore = _constructor("pick_score", "PickScore")
HPS = _constructor("hps", "HPS")
ImageReward = _constructor("image_reward", "ImageReward")
Diversity = _constructor("diversity", "Diversity")

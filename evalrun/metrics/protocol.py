"""Published evaluation protocols, and whether a run followed one closely enough to be compared with
published numbers.

Every run's result row gets ``protocol`` (``none`` or ``adm``), ``comparable_to_published`` and
``protocol_departures`` (what differs, ``;``-separated; empty when comparable).

``adm``: guided-diffusion's ``evaluations/evaluator.py``, the protocol behind the FID-50K / sFID
/ IS / precision / recall tables of ADM (Dhariwal & Nichol 2021), DiT, and the class-conditional
ImageNet papers that use its reference batches. A run is comparable when all of:

- N = 50,000 samples; for class-conditional runs 50 per class over all 1000 classes;
- the reference is one of the published ADM reference batches (``reference=adm``, recognised
  by file name: a renamed copy is not recognised), holding its statistics and ``arr_0``;
- the official Inception weights for every Inception metric;
- FID and sFID against the batch's stored statistics (``mu``/``sigma``, ``mu_s``/``sigma_s``);
- IS with the evaluator's split rule (``split_size=5000``, no shuffle);
- precision/recall with k=3 in float16 (the evaluator's arithmetic);
- generated images of the reference batch's resolution.

It covers ``fid``, ``sfid``, ``inception_score`` and ``adm``; other metrics in the same run are
not part of the protocol and do not change the flag. Features come from torch-fidelity's port
of the evaluator's TensorFlow Inception graph, not the graph itself (see the notes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ADM_METRICS = ("fid", "sfid", "inception_score", "adm")
WEIGHTS = "Inception weights are not the official file"
# The reference batches guided-diffusion publishes (evaluations/README.md and the ADM repository).
PUBLISHED_ADM_BATCHES = ("VIRTUAL_imagenet64_labeled.npz", "VIRTUAL_imagenet128_labeled.npz",
                         "VIRTUAL_imagenet256_labeled.npz", "VIRTUAL_imagenet512.npz", "VIRTUAL_lsun_bedroom256.npz",
                         "VIRTUAL_lsun_cat256.npz", "VIRTUAL_lsun_horse256.npz")


def protocol_columns(cfg: Any, metrics: dict[str, Any], results: dict[str, Any], n_images: int) -> dict[str, Any]:
    """``protocol``, ``comparable_to_published``, ``protocol_departures`` for a finished run."""
    from evalrun.plain import to_plain

    proto = to_plain(cfg.get("protocol")) or {}
    name = str(proto.get("name", "none"))
    if name == "none":
        return {"protocol": "none", "comparable_to_published": False,
                "protocol_departures": "no published protocol selected (protocol=none)"}
    departures = adm_departures(proto, cfg, metrics, results, n_images)
    return {"protocol": name, "comparable_to_published": not departures, "protocol_departures": "; ".join(departures)}


def _count_departures(proto: dict, cfg: Any, n_images: int) -> list[str]:
    out = []
    want = int(proto.get("num_images", 50000))
    if n_images != want:
        out.append(f"N={n_images}, not {want}")
    if cfg.model.get("task") == "class2img":
        per_class, classes = int(cfg.num_images_per_prompt), int(proto.get("num_classes", 1000))
        if per_class != int(proto.get("images_per_class", 50)):
            out.append(f"{per_class} images per class, not {proto.get('images_per_class', 50)}")
        prompts = cfg.get("prompts") or {}
        if not prompts.get("all") or int(prompts.get("num_classes") or 1000) != classes:
            out.append(f"not all {classes} classes (prompts.all=true)")
    return out


def _reference_departures(cfg: Any, names: set[str]) -> list[str]:
    from evalrun.plain import to_plain

    ref = to_plain(cfg.get("reference")) or {}
    if ref.get("kind") != "adm":
        return [f"reference is {ref.get('kind')}:{ref.get('path')}, not an ADM reference batch (reference=adm)"]
    from evalrun.metrics.functional.adm_batches import npz_keys

    out, keys = [], set(npz_keys(ref["path"]))
    if Path(str(ref["path"])).name not in PUBLISHED_ADM_BATCHES:
        out.append(f"reference file {Path(str(ref['path'])).name} is not a published ADM reference batch by name "
                   f"({', '.join(PUBLISHED_ADM_BATCHES)})")
    if names & {"fid", "sfid"} and not {"mu", "sigma", "mu_s", "sigma_s"} <= keys:
        out.append("reference batch has no stored statistics (mu, sigma, mu_s, sigma_s)")
    if "adm" in names and "arr_0" not in keys:
        out.append("reference batch has no arr_0 images")
    return out


def _metric_departures(name: str, metric: Any, info: dict[str, Any]) -> list[str]:
    out = []
    extractor = getattr(metric, "extractor", None)
    if extractor is not None:
        if getattr(metric, "extractor_name", None) != "inception":
            return [f"{name} uses {metric.extractor_name}, not Inception"]
        if not extractor.weights_identity().get("official"):
            out.append(WEIGHTS)
        if name in ("fid", "adm") and metric.layer != "2048":  # the evaluator's FID and precision/recall: pool3
            out.append(f"{name}: feature layer {metric.layer}, not pool3 (2048)")
    if name in ("fid", "sfid"):
        if not str(info.get("reference_stats_source", "")).startswith("file"):
            out.append(f"{name}: reference statistics not the batch's stored ones")
    elif name == "inception_score":
        if metric.split_size != 5000 or not metric.shuffle:  # unshuffled, a class-sorted run caps IS at 100
            out.append("inception_score: not the evaluator's split rule on a randomly ordered batch "
                       "(split_size=5000, shuffle=true)")
    elif name == "adm":
        if metric.k != 3 or metric.arithmetic != "float16":
            out.append(f"adm: k={metric.k}, arithmetic={metric.arithmetic} (the evaluator: k=3, float16)")
    return out


def adm_departures(proto: dict, cfg: Any, metrics: dict[str, Any], results: dict[str, Any], n_images: int) -> list[str]:
    names = set(metrics) & set(ADM_METRICS)
    out = _count_departures(proto, cfg, n_images) + _reference_departures(cfg, names)
    if not names:
        out.append(f"none of the protocol's metrics ({', '.join(ADM_METRICS)}) was computed")
    infos = {n: (results[n].info if n in results else {}) for n in names}
    per_metric = {name: _metric_departures(name, metrics[name], infos[name]) for name in sorted(names)}
    unofficial = [name for name, found in per_metric.items() if WEIGHTS in found]
    if unofficial:
        out.append(f"{WEIGHTS} ({', '.join(unofficial)})")
    out += [d for found in per_metric.values() for d in found if d != WEIGHTS]
    generated = {s for n, info in infos.items() for s in info.get(f"{n}_generated_sizes", [])}
    ref_size = next((info.get("reference_image_size") for info in infos.values() if info.get("reference_image_size")), None)
    if ref_size and generated and generated != {ref_size}:
        out.append(f"generated images are {', '.join(sorted(generated))}, the reference batch {ref_size}")
    return out

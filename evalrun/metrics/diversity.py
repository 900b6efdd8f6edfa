"""Diversity of the images of each prompt: Vendi score and mean pairwise cosine distance.

Per group of images (by default the images of one prompt in this run: its
``num_images_per_prompt`` samples), on one backbone's embeddings (CLIP image embeddings by
default, read through the run's feature store, so CLIP runs once per image even with
``clip_score`` on; any registered extractor by setting), then averaged over the groups that
have at least two images. Distilled models and high guidance collapse modes: their images of
one prompt look alike, and both numbers fall (README, "Preference scores, diversity, cost").

Higher means more diverse; whether that is better depends on the study (a model that ignores
its prompt is diverse too), so read it beside a text-image score.

With one run per seed, the images of a prompt across seeds lie in different runs:
``python -m evalrun.diversity SWEEP_DIR`` pools them per configuration (``evalrun/diversity.py``).
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext, MetricResult, Output
from evalrun.metrics.common import ExtractorMetric

log = logging.getLogger(__name__)
GROUP_FIELDS = ("prompt", "category", "challenge")  # kept beside each prompt's numbers
# What images can be grouped by: the fields every task's records may have, and "all" (one group).
GROUP_BY = ("prompt_id", "prompt", "category", "challenge", "class_id", "seed", "all")


def extractor_options(name: str, clip_model: str, batch_size: int, options: dict[str, Any] | None,
                      key: str) -> dict[str, Any]:
    """The options ``build_extractor`` gets: CLIP's model path, or ``options`` for any other backbone;
    ``key`` (the config key named in load errors) only where the extractor takes one."""
    from evalrun.metrics.features import extractor_class

    out = {"path": str(clip_model)} if name == "clip" else {}
    out.update({"batch_size": batch_size, **dict(options or {})})
    if "key" in inspect.signature(extractor_class(name).__init__).parameters:
        out["key"] = key
    return out


def group_diversity(embeddings, q: float) -> dict[str, float]:
    """Vendi score (order ``q``) and mean pairwise cosine distance of one group; NaN below two images."""
    from evalrun.metrics.functional.vendi import mean_pairwise_cosine_distance, vendi_score

    if len(embeddings) < 2:
        return {"vendi": math.nan, "pairwise_cosine": math.nan}
    return {"vendi": vendi_score(embeddings, q), "pairwise_cosine": mean_pairwise_cosine_distance(embeddings)}


def summarise_groups(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means over groups with two or more images, and how many there were."""
    scored = [r for r in rows if r["n_images"] >= 2]
    mean = (lambda k: float(sum(r[k] for r in scored) / len(scored))) if scored else (lambda k: math.nan)
    return {"diversity_vendi": mean("vendi"), "diversity_pairwise_cosine": mean("pairwise_cosine"),
            "diversity_groups": len(scored)}


def check_q(q: Any, key: str = "metrics.diversity.q") -> float:
    """The Vendi order, named ``key`` in messages (the CLI's option is ``--q``)."""
    try:
        value = float(q)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0:
        raise ConfigError(f"{key} must be a number > 0 (1: Shannon, the Vendi paper's default; inf), got {q!r}")
    return value


class Diversity(ExtractorMetric):
    """Mean over prompts of the Vendi score and of the mean pairwise cosine distance of that prompt's
    images. Per-prompt values: ``run.json`` -> ``provenance.metrics.diversity.per_group``."""

    name = "diversity"
    layer_setting = "layer"
    outputs = (
        # No direction: more diverse is not better in every study (reports say higher/lower, mark no best)
        Output("diversity_vendi", fmt=".3f", label="Vendi score per prompt"),
        Output("diversity_pairwise_cosine", fmt=".4f", label="mean pairwise cosine distance per prompt"),
        Output("diversity_groups", kind="count", of="diversity_vendi", label="groups averaged"),
    )

    def __init__(self, context: MetricContext | None = None, feature_extractor: str = "clip",
                 clip_model: str = "openai/clip-vit-base-patch16", feature_extractor_options: dict | None = None,
                 layer: str | None = None, batch_size: int = 64, q: float = 1.0, group_by: str = "prompt_id") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"metrics.diversity.batch_size must be a positive integer, got {batch_size!r}")
        if group_by not in GROUP_BY:
            raise ConfigError(f"metrics.diversity.group_by={group_by!r} is not a field of the images' records; "
                              f"valid: {', '.join(GROUP_BY)}")
        if context is not None and context.task == "unconditional" and group_by not in ("all", "seed"):
            raise ConfigError(f"metrics.diversity.group_by={group_by!r}: unconditional samples have no prompt, class or "
                              f"category to group by (each would be a group of one); set metrics.diversity.group_by=all "
                              f"(the diversity of all samples)")
        from evalrun.metrics.features import EXTRACTORS, is_known

        if not is_known(str(feature_extractor)):
            raise ConfigError(f"metrics.diversity.feature_extractor={feature_extractor!r} is not a registered "
                              f"extractor; valid: {', '.join(sorted(EXTRACTORS))}")
        options = extractor_options(str(feature_extractor), clip_model, batch_size, feature_extractor_options,
                                    "metrics.diversity.clip_model" if feature_extractor == "clip"
                                    else "metrics.diversity.feature_extractor_options.path")
        super().__init__(context, feature_extractor, options, layer)
        self.clip_model = str(clip_model) if feature_extractor == "clip" else None
        self.q, self.group_by = check_q(q), group_by
        self._groups: dict[Any, list] = {}
        self._meta: dict[Any, dict[str, Any]] = {}

    def update(self, batch: ImageBatch) -> None:
        feats = self.features(batch)
        for i, record in enumerate(batch.records):
            if self.group_by == "all":
                group = "all"
            elif record.get(self.group_by) is None:
                raise EvalrunError(f"metrics.diversity.group_by={self.group_by!r}: image {batch.start + i} has no "
                                   f"{self.group_by} (this prompt set or task gives none); group by a field it has "
                                   f"({', '.join(f for f in GROUP_BY if record.get(f) is not None or f == 'all')})")
            else:
                group = record[self.group_by]
            self._groups.setdefault(group, []).append(feats[i:i + 1])
            self._meta.setdefault(group, {k: record.get(k) for k in GROUP_FIELDS if self.group_by == "prompt_id"})

    def compute(self) -> MetricResult:
        import numpy as np

        rows = []
        for group, chunks in self._groups.items():
            x = np.concatenate(chunks)
            try:
                values = group_diversity(x, self.q)
            except ValueError as exc:  # a zero or non-finite embedding has no direction
                raise EvalrunError(f"diversity of {self.group_by}={group!r}: {exc}") from None
            rows.append({self.group_by: group, **self._meta[group], "n_images": len(x), **values})
        values = summarise_groups(rows)
        sizes = sorted({r["n_images"] for r in rows})
        info: dict[str, Any] = {
            **self.extractor_info(), "diversity_group_by": self.group_by, "diversity_q": self.q,
            "diversity_kernel": "cosine similarity of the embeddings (Vendi: exp of the order-q entropy of the "
                                "eigenvalues of K/n); pairwise: mean of 1 - cos over distinct pairs, float64",
            "diversity_images_per_group": sizes, "diversity_groups_total": len(rows),
            "diversity_direction_note": "higher = more diverse, which is not better in every study",
            "per_group": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                          for r in rows],
        }
        if rows and values["diversity_groups"] == 0:
            info["diversity_warning"] = (f"every {self.group_by} group has one image: nothing to compare. Set "
                                         f"num_images_per_prompt >= 2, or pool seeds with python -m evalrun.diversity "
                                         f"SWEEP_DIR")
            log.warning(info["diversity_warning"])
        return MetricResult(values=values, info=info)

    def settings(self) -> dict[str, Any]:
        extra = {"clip_model": self.clip_model} if self.clip_model is not None else {}
        return {**self.extractor_settings(), **extra, "q": self.q, "group_by": self.group_by}

"""Diversity across seeds: per prompt, over every image of that prompt in the runs of one configuration.

A sweep runs one seed per run, so the images of one prompt across seeds lie in different run
dirs and no single run can measure how alike they are. This command reads what the runs wrote
(as the summary does), groups the complete runs into configurations exactly as ``summary.csv``
does (every config column but the seed), and per configuration and prompt computes the Vendi
score and the mean pairwise cosine distance of all that prompt's images (seeds x
``num_images_per_prompt``), then averages over prompts:

    python -m evalrun.diversity SWEEP_DIR [MORE_SWEEP_DIRS] [--clip-model ID] [--feature-extractor NAME
        --option KEY=VALUE ...] [--layer L] [--q 1] [--device auto] [--out DIR]

writes ``diversity.csv`` (one row per configuration), ``diversity_per_prompt.csv`` and
``diversity.json`` (the backbone's provenance) into the (first) sweep dir, beside ``summary.csv``.

Features go through a feature store on the evalrun cache, chunked exactly as the runs scored
their images (64 per chunk, in run order, keyed by the pixel hashes in ``per_image.csv``): when
a run already embedded its images with the same backbone (``clip_score`` or ``diversity`` with
the same CLIP model and batch size), nothing is recomputed and no PNG is read; otherwise the
saved PNGs are read, checked against their pixel hashes, embedded once and cached.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from evalrun.errors import EvalrunError

log = logging.getLogger(__name__)
CSV_FILE, PER_PROMPT_FILE, INFO_FILE = "diversity.csv", "diversity_per_prompt.csv", "diversity.json"
DEFAULT_CLIP = "openai/clip-vit-base-patch16"
KEEP = ("prompt", "category", "challenge")


class SavedChunk:
    """What ``FeatureStore.features`` reads of a batch (``key``, ``hashes``, ``images``), for images a run
    saved: the PNGs are read (and verified) only when the features are not in the cache."""

    def __init__(self, paths: list[Path], hashes: list[str]) -> None:
        self.paths, self.hashes, self._images = paths, hashes, None

    @property
    def key(self) -> str:
        from evalrun.metrics.base import ImageBatch

        return ImageBatch.key.fget(self)  # the same key the run's chunk had

    @property
    def images(self):
        if self._images is None:
            import numpy as np
            import torch

            from evalrun.images import read_verified

            pixels = []
            for path, digest in zip(self.paths, self.hashes):
                found = read_verified(path, digest)
                if found is None:
                    raise EvalrunError(f"{path}: missing, unreadable, or its pixels do not match the hash in "
                                       f"per_image.csv; the run dir changed after the run (re-run it)")
                pixels.append(found[0])
            self._images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
        return self._images


def run_embeddings(run_dir: Path, store: Any, extractor: Any, layer: str):
    """(per_image rows, (n, dim) embeddings) of one run, in ``per_image.csv`` order."""
    import numpy as np
    import pandas as pd

    from evalrun.metrics.features.store import CHUNK

    rows = pd.read_csv(run_dir / "per_image.csv", dtype={"prompt": str, "category": str, "challenge": str,
                                                         "pixels": str, "path": str})
    feats = []
    for start in range(0, len(rows), CHUNK):
        part = rows.iloc[start:start + CHUNK]
        chunk = SavedChunk([run_dir / p for p in part["path"]], [str(h) for h in part["pixels"]])
        feats.append(store.features(extractor, chunk)[layer])
    dim = extractor.layers[layer]
    return rows, (np.concatenate(feats) if feats else np.zeros((0, dim), np.float32))


def default_clip_model(runs) -> str:
    """The CLIP model the runs' own diversity or clip_score used (constant across runs), else the default."""
    for column in ("diversity.clip_model", "clip_score.clip_model"):
        if column in runs:
            values = runs[column].dropna().astype(str).unique()
            if len(values) == 1:
                return str(values[0])
    return DEFAULT_CLIP


def sweep_diversity(sweep_dirs: Sequence[Path | str], feature_extractor: str = "clip", clip_model: str | None = None,
                    options: dict[str, Any] | None = None, layer: str | None = None, q: float = 1.0,
                    device: str = "cpu", batch_size: int = 64, group_by: str = "prompt_id"):
    """(per configuration, per group, info) for the complete runs under ``sweep_dirs``; ``group_by``: a
    ``per_image.csv`` column (``prompt_id``, ``category``, ``challenge``) or ``all`` (unconditional models)."""
    import numpy as np
    import pandas as pd

    from evalrun.aggregate import configurations
    from evalrun.metrics.common import DEFAULT_LAYERS, extractor_digests
    from evalrun.metrics.diversity import GROUP_BY, check_q, extractor_options, group_diversity, summarise_groups
    from evalrun.metrics.features import build_extractor
    from evalrun.metrics.features.store import FeatureStore
    from evalrun.paths import cache_dir
    from evalrun.runs import load_runs

    runs = load_runs([Path(d) for d in sweep_dirs])
    if runs.empty:
        raise EvalrunError(f"no complete runs (run.json + metrics.csv) under {', '.join(map(str, sweep_dirs))}")
    q = check_q(q, "--q")
    clip_model = clip_model or default_clip_model(runs)
    opts = extractor_options(feature_extractor, clip_model, batch_size, options,
                            "--clip-model" if feature_extractor == "clip" else "--option path")
    extractor = build_extractor(feature_extractor, _device(device), **opts)
    layer = layer or DEFAULT_LAYERS.get(feature_extractor) or next(iter(extractor.layers))
    if layer not in extractor.layers:
        raise EvalrunError(f"--layer {layer!r}: {feature_extractor} gives {', '.join(extractor.layers)}")
    store = FeatureStore(cache_dir() / "features")
    keys, groups = configurations(runs)
    configs, prompts = [], []
    for values, group in groups:
        config = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        if config.get("task") == "unconditional" and group_by != "all":  # sample i of two seeds: unrelated images
            raise EvalrunError(f"--group-by {group_by}: unconditional runs have no prompts, and their sample i of one "
                               f"seed has nothing in common with sample i of another; use --group-by all")
        embeddings: dict[Any, list] = {}
        meta: dict[Any, dict[str, Any]] = {}
        for run_dir in group["run_dir"]:
            rows, feats = run_embeddings(Path(run_dir), store, extractor, layer)
            for i, row in enumerate(rows.to_dict("records")):
                if group_by != "all" and _blank(row.get(group_by)):  # as the in-run metric: never pool unknowns
                    has = ", ".join(f for f in GROUP_BY if f == "all" or not _blank(row.get(f)))
                    raise EvalrunError(f"--group-by {group_by}: image {row.get('image_id', i)} of {run_dir}/per_image.csv"
                                       f" has no {group_by}{'' if group_by in row else ' column'}; group by a field it "
                                       f"has ({has})")
                key = "all" if group_by == "all" else row[group_by]
                embeddings.setdefault(key, []).append(feats[i])
                meta.setdefault(key, {k: row.get(k) for k in KEEP} if group_by == "prompt_id" else {})
        per_prompt = []
        for key, vectors in embeddings.items():
            x = np.stack(vectors)
            per_prompt.append({group_by: key, **meta[key], "n_images": len(x),
                               **group_diversity(x, q)})
        stats = summarise_groups(per_prompt)
        frame = pd.DataFrame(per_prompt)
        sizes = sorted(set(frame["n_images"])) if len(frame) else []
        configs.append({**config, "seeds": " ".join(str(s) for s in sorted(group["seed"])), "n_runs": len(group),
                        "n_groups": stats["diversity_groups"],
                        "images_per_group": "-".join(str(s) for s in sorted({sizes[0], sizes[-1]})) if sizes else "",
                        "diversity_vendi": stats["diversity_vendi"],
                        "diversity_vendi_std": frame["vendi"].std(ddof=1) if len(frame) else float("nan"),
                        "diversity_pairwise_cosine": stats["diversity_pairwise_cosine"],
                        "diversity_pairwise_cosine_std": frame["pairwise_cosine"].std(ddof=1) if len(frame)
                        else float("nan")})
        prompts += [{**config, **r} for r in per_prompt]
    settings = {"feature_extractor": feature_extractor, "feature_layer": layer, "q": q, "group_by": group_by,
                **extractor_digests(extractor), **({"clip_model": clip_model} if feature_extractor == "clip" else {})}
    # across_seeds.*: not diversity.*, which are the in-run metric's settings (group keys when the runs had it)
    summary = pd.DataFrame(configs).assign(**{f"across_seeds.{k}": v for k, v in settings.items()})
    info = {**extractor.info(), "feature_layer": layer, "q": q, "group_by": f"{group_by}, pooled over seeds",
            "features": {"extracted": store.extracted, "reused": store.reused},
            "runs": [str(d) for d in runs["run_dir"]]}
    return summary, pd.DataFrame(prompts), info


def _blank(value: Any) -> bool:
    """A cell pandas read as empty (NaN) or a missing column."""
    return value is None or (isinstance(value, float) and value != value) or value == ""


def _device(device: str):
    from evalrun.config import resolve_device

    try:
        return resolve_device(device)
    except EvalrunError as exc:  # the message names the config key; this command's option is --device
        raise EvalrunError(str(exc).replace(f"device={device!r}", f"--device {device}")) from None


def write_diversity(sweep_dirs: Sequence[Path | str] | Path | str, out_dir: Path | str | None = None,
                    **kwargs: Any) -> Path:
    """Write ``diversity.csv``, ``diversity_per_prompt.csv`` and ``diversity.json``; returns the csv's path."""
    from evalrun.results import atomic_write_text, write_csv

    if isinstance(sweep_dirs, (str, Path)):
        sweep_dirs = [sweep_dirs]
    summary, per_prompt, info = sweep_diversity(sweep_dirs, **kwargs)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    write_csv(per_prompt, out / PER_PROMPT_FILE)
    atomic_write_text(out / INFO_FILE, json.dumps(info, indent=1, default=str) + "\n")
    write_csv(summary, out / CSV_FILE)
    log.info("wrote %s (%d configurations; features extracted %d, reused %d)", out / CSV_FILE, len(summary),
             info["features"]["extracted"], info["features"]["reused"])
    return out / CSV_FILE


def _option(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option wants KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalrun.diversity", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun sweep directories (merged)")
    parser.add_argument("--feature-extractor", default="clip", help="any registered extractor (default: clip)")
    parser.add_argument("--clip-model", default=None, help="CLIP model (default: the runs' clip_score.clip_model)")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                        help="an extractor option, e.g. path=/weights.pth (repeatable)")
    parser.add_argument("--layer", default=None, help="feature layer (default: the extractor's)")
    parser.add_argument("--batch-size", type=int, default=64, help="as the runs' metric, to reuse their features")
    parser.add_argument("--q", type=float, default=1.0, help="Vendi order (default 1)")
    parser.add_argument("--group-by", default="prompt_id", help="prompt_id (default), category, challenge, or all")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the first sweep dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from evalrun.console import quiet_libraries

    quiet_libraries()
    try:
        path = write_diversity(args.sweep_dirs, args.out, feature_extractor=args.feature_extractor,
                               clip_model=args.clip_model, options=dict(args.option), layer=args.layer, q=args.q,
                               device=args.device, batch_size=args.batch_size, group_by=args.group_by)
    except EvalrunError as exc:
        print(f"evalrun.diversity: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

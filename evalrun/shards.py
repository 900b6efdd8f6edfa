"""One configuration's images split across jobs (``num_shards=N shard=0,...,N-1 -m``), merged exactly.

Every image's noise comes from its own generator seeded from (seed, prompt id, image index), so
an image is the same whichever shard makes it. Shards split the run's image list in whole
scoring chunks (64 images, in run order): ``contiguous`` gives shard i the i-th block of
chunks, ``strided`` gives it every N-th chunk. Chunk-aligned shards extract exactly the chunks
an unsharded run would, so the merge finds every chunk's features in the feature cache and its
numbers are the unsharded run's, not an approximation of them.

A shard writes its images, feeds every metric (so each backbone's features are cached) and
records ``shard.json``; it writes no ``metrics.csv`` (a shard is not a run). When the last shard
of a configuration finishes, whichever process or machine runs it, it merges: it runs the
configuration unsplit into the merged run directory, where every image is found (in the image
store or the shards' folders) and every feature is cached, so nothing is sampled or extracted
twice (``evalrun.merge.try_merge``). ``python -m evalrun.merge SWEEP_DIR`` does the same by hand and
lists missing shards.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError
from evalrun.hashing import stable_hash
from evalrun.metrics.features import store as feature_store

log = logging.getLogger(__name__)
SHARD_FILE = "shard.json"
REGISTRY = ".shards"  # in the merged run dir: a pointer to each finished shard
MODES = ("contiguous", "strided")
SHARD_KEYS = ("shard", "num_shards", "shard_mode", "shard_merge_dir")


def validate(cfg: Any) -> None:
    n, i, mode = cfg.get("num_shards", 1), cfg.get("shard", 0), cfg.get("shard_mode", "contiguous")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_shards must be a positive integer, got {n!r}")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
        raise ConfigError(f"shard must be an integer in 0..{n - 1} (num_shards={n}), got {i!r}; sweep it: "
                          f"shard={','.join(str(k) for k in range(min(n, 4)))}{',...' if n > 4 else ''} -m")
    if mode not in MODES:
        raise ConfigError(f"shard_mode={mode!r} is not valid; use one of {', '.join(MODES)}")


def sharded(cfg: Any) -> bool:
    return int(cfg.get("num_shards", 1) or 1) > 1


def select(n_jobs: int, num_shards: int, shard: int, mode: str, chunk: int | None = None) -> list[int]:
    """Indices of the jobs shard ``shard`` makes: whole chunks of ``chunk`` images (default: the scoring
    chunk, :data:`~evalrun.metrics.features.store.CHUNK`), in run order."""
    chunk = chunk or feature_store.CHUNK
    chunks = [list(range(start, min(start + chunk, n_jobs))) for start in range(0, n_jobs, chunk)]
    if mode == "strided":
        mine = chunks[shard::num_shards]
    else:
        # Balanced: shard sizes differ by one chunk at most. (Blocks of ceil(chunks / shards) left the last
        # shards empty: 600 images over 8 shards gave 128 x 4, 88 and three idle GPUs.)
        per, extra = divmod(len(chunks), num_shards)  # the first `extra` shards take one chunk more
        start = shard * per + min(shard, extra)
        mine = chunks[start:start + per + (shard < extra)]
    return [j for c in mine for j in c]


def unsplit(cfg: Any):
    """The configuration as if it had not been split (its run key is the unsharded run's)."""
    from omegaconf import OmegaConf

    merged = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    merged.num_shards, merged.shard, merged.shard_mode, merged.shard_merge_dir = 1, 0, "contiguous", None
    return merged


def write_record(run_dir: Path, cfg: Any, run_key: str, merged_dir: Path, image_ids: list[str],
                 stream: Any, config_key: str | None = None) -> dict[str, Any]:
    """``shard.json``: the shard is complete (its images written, its features cached) and where it merges."""
    from omegaconf import OmegaConf

    from evalrun.results import write_json

    record = {"status": "complete", "run_key": run_key, "config_key": config_key, "shard": int(cfg.shard), "num_shards": int(cfg.num_shards),
              "shard_mode": cfg.shard_mode, "chunk": feature_store.CHUNK, "merged_dir": str(_absolute(merged_dir)),
              # The sweep's merged dir (no shard_merge_dir) is found by name beside the shard: a copied or moved
              # sweep merges in itself. A shard_merge_dir given is where the user said, wherever the shards are.
              "merged_beside": Path(merged_dir).name if not cfg.get("shard_merge_dir")
              and _absolute(merged_dir).parent == _absolute(run_dir).parent else None,  # (hydra.sweep.subdir may nest)
              "n_images": len(image_ids),
              "images": {"sampled": stream.sampled, "reused": stream.reused},
              "config": OmegaConf.to_container(unsplit(cfg), resolve=True)}
    write_json(record, run_dir / SHARD_FILE)
    # Where the merge looks, too: shards run outside a sweep (shard_merge_dir=) may sit in folders of their own.
    write_json({"run_dir": str(Path(run_dir).resolve())},
               Path(merged_dir) / REGISTRY / f"{record['shard']}-{stable_hash(record['config'], length=16)}.json")
    log.info("shard %d/%d complete: %d images in %s", record["shard"] + 1, record["num_shards"], len(image_ids), run_dir)
    return record


def read_record(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SHARD_FILE
    if not path.exists():
        return None
    try:
        from evalrun.results import read_json

        record = read_json(path)
    except ValueError:
        return None
    return record if record.get("status") == "complete" else None


def _absolute(path: Any) -> Path:
    """One spelling per folder (records written by older versions hold a sweep's relative dirs)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def merged_dir_of(record: dict, shard_dir: Path) -> Path:
    """Where the shard in ``shard_dir`` merges, absolute: the folder of that name beside it (wherever the sweep
    dir is now) for a sweep's merge, else the ``shard_merge_dir`` it recorded."""
    beside = record.get("merged_beside")
    return _absolute(Path(shard_dir).parent / beside if beside else record["merged_dir"])


def siblings(sweep_dir: Path, merged_dir: Path, like: dict | None = None) -> dict[int, Path]:
    """Complete shard dirs under ``sweep_dir`` that merge into ``merged_dir``, by shard index; with ``like`` (a
    shard record), only the shards of its configuration (one ``shard_merge_dir`` shared by a sweep over seeds
    must not complete seed 1's shards with seed 0's) split the same way: shard 0 of 2 is not shard 0 of 3,
    and counting it would leave a block of images to the merging job, unannounced."""
    found = {}
    for child in [*Path(sweep_dir).iterdir(), *registered(Path(merged_dir))]:
        record = read_record(child) if child.is_dir() else None
        if record is None or merged_dir_of(record, child) != _absolute(merged_dir) \
                or (like is not None and record.get("config") != like.get("config")):
            continue
        if like is not None and split_of(record) != split_of(like):
            log.warning("%s is shard %d of %d (%s) of this configuration, where this merge's shards are of %d (%s): "
                        "not merged with them; run every shard with the same num_shards and shard_mode", child,
                        record["shard"], *split_of(record)[:2], *split_of(like)[:2])
            continue
        found.setdefault(int(record["shard"]), child)
    return found


def split_of(record: dict) -> tuple:
    """How a shard's configuration was split: (num_shards, shard_mode, chunk)."""
    return record.get("num_shards"), record.get("shard_mode"), record.get("chunk")


def registered(merged_dir: Path) -> list[Path]:
    """The shard dirs that recorded themselves in ``merged_dir`` (wherever they ran)."""
    found = []
    for pointer in sorted((merged_dir / REGISTRY).glob("*.json")):
        try:
            found.append(Path(json.loads(pointer.read_text(encoding="utf-8"))["run_dir"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def merged_dir_for(cfg: Any, hydra_cfg: Any | None) -> Path:
    """Where a shard's configuration merges: ``shard_merge_dir`` if set, else (in a sweep) the job dir
    named by the overrides without the shard keys, as if the configuration had been run unsplit."""
    if cfg.get("shard_merge_dir"):
        return Path(str(cfg.shard_merge_dir)).expanduser()
    if hydra_cfg is None or str(getattr(hydra_cfg, "mode", "")) != "RunMode.MULTIRUN":
        raise ConfigError("a sharded run outside a sweep needs shard_merge_dir=DIR (where its shards merge); in a "
                          "sweep (-m) the merged run is named by the overrides without the shard keys")
    from evalrun.jobdirs import job_dirname

    overrides = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") not in SHARD_KEYS]
    exclude = set(hydra_cfg.job.config.override_dirname.exclude_keys or [])
    kept = sorted(o for o in overrides if o.split("=", 1)[0] not in exclude)
    return Path(hydra_cfg.sweep.dir) / job_dirname(",".join(kept), str(hydra_cfg.sweep.dir))

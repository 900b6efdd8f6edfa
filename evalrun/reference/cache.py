"""Reference features, computed once per (images' content, selection, preprocessing, extractor).

The cache key is built from everything that changes the features: the images' content (sha256
of each selected file, or the dataset's fingerprint), the selection (limit, shuffle_seed), the
preprocessing and the extractor's identity (name, weights sha256, preprocessing, layers,
library versions). Not the path: a copy of the same folder hits the same entry. Not the
device: CPU and GPU features differ only at float32 round-off. So a sweep computes them once,
and a lock file stops parallel jobs from computing them side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from evalrun.errors import EvalrunError
from evalrun.reference import images as ref_images
from evalrun.reference.npz import load_npz, save_npz
from evalrun.reference.spec import ReferenceSpec
from evalrun.results import shared_mode

log = logging.getLogger(__name__)
CACHE_VERSION = 2


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    from evalrun.paths import cache_dir as default_cache

    return default_cache(cache_dir) / "reference"


def _file_sha256(path: Path, manifest: dict[str, list]) -> str:
    """sha256 of a file, reused from ``manifest`` while its ``file_stamp`` is unchanged."""
    from evalrun.hashing import file_stamp

    stamp = list(file_stamp(path.stat()))
    entry = manifest.get(str(path))
    if entry and entry[:-1] == stamp:
        return entry[-1]
    found = hashlib.sha256()
    with open(path, "rb") as fh:  # in chunks: a local dataset's parquet shards run to gigabytes
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            found.update(chunk)
    digest = found.hexdigest()
    manifest[str(path)] = [*stamp, digest]
    return digest


def source_fingerprint(spec: ReferenceSpec, root: Path) -> dict[str, Any]:
    """What identifies the selected images' content (never their location)."""
    if spec.kind == "folder":
        files = ref_images.folder_files(spec)
        hashes = _files_sha256(files, Path(spec.path), root)
        return {"kind": "folder", "n": len(files), "content_sha256": hashlib.sha256("\n".join(hashes).encode()).hexdigest()}
    if spec.kind == "adm":
        from evalrun.reference.adm import fingerprint

        return fingerprint(spec)
    ds = ref_images.load_dataset(spec)
    found = {"kind": "dataset", "n": len(ds), "fingerprint": ds._fingerprint, "path": spec.path, "name": spec.name,
             "split": spec.split, "revision": spec.revision, "image_column": spec.image_column}
    local = Path(str(spec.path)).expanduser()
    if local.exists():
        # A local dataset's fingerprint follows its files' paths and mtimes, not their content: an image
        # replaced with its mtime kept (cp -p, rsync -a) gave the old features. Its files' sha256 (each
        # reused while its stamp, ctime included, is unchanged) key it as a folder's images do.
        files = [local] if local.is_file() else sorted(
            p for p in local.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local).parts))
        named = [f"{p.relative_to(local) if p != local else p.name}:{h}"
                 for p, h in zip(files, _files_sha256(files, local, root))]
        found["content_sha256"] = hashlib.sha256("\n".join(named).encode()).hexdigest()
    return found


def _files_sha256(files: list[Path], source: Path, root: Path) -> list[str]:
    """Each file's sha256, through a manifest per source folder that keeps them while files are unchanged."""
    from evalrun.results import atomic_write_text

    name = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:32]
    manifest_path = root / "manifests" / f"{name}.json"
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except ValueError:
        manifest = {}
    hashes = [_file_sha256(p, manifest) for p in files]
    atomic_write_text(manifest_path, json.dumps(manifest))
    return hashes


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            import fcntl
            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # no flock (Windows): parallel jobs may compute twice, never corrupt
            pass
        yield


class Reference:
    """A run's reference set; features and statistics per extractor, from the cache or computed once."""

    def __init__(self, spec: ReferenceSpec, cache_dir: str | os.PathLike | None = None) -> None:
        self.spec = spec
        self.root = cache_root(cache_dir)
        self._entries: dict[str, tuple[Path, dict[str, Any]]] = {}

    def entry(self, extractor) -> tuple[Path, dict[str, Any]]:
        """The cache entry directory for (images, extractor), computing its features if absent."""
        if extractor.key in self._entries:
            return self._entries[extractor.key]
        spec = self.spec
        desc = {"version": CACHE_VERSION, "source": source_fingerprint(spec, self.root),
                "preprocessing": spec.preprocessing(), "selection": {"limit": spec.limit, "shuffle_seed": spec.shuffle_seed},
                "extractor": extractor.identity()}
        key = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()
        entry, status = self.root / key[:32], "hit"
        with _lock(self.root / "locks" / f"{key[:32]}.lock"):
            if (entry / "meta.json").exists() and not _readable(entry, extractor.layers):
                log.warning("reference cache entry %s is damaged (a file is cut short or unreadable); computing it "
                            "again", entry)
                shutil.rmtree(entry, ignore_errors=True)
            if not (entry / "meta.json").exists():
                status = "computed"
                log.info("reference features: %s with %s (computed once, then cached under %s)",
                         spec.describe(), extractor.name, self.root)
                self._compute(entry, desc, key, extractor)
        meta = json.loads((entry / "meta.json").read_text())
        if spec.strict and meta.get("skipped"):  # computed without strict: refuse as a cold cache would
            raise EvalrunError(f"reference image {_here(spec, meta, meta['skipped'][0])} cannot be read (skipped "
                               f"when these features were cached, {len(meta['skipped'])} file(s) in all); fix or "
                               f"remove it, or set reference.strict=false to skip unreadable files")
        info = {"reference": spec.describe(), "reference_n": meta["n"], "reference_cache_key": key[:32],
                "reference_cache": status, "reference_preprocessing": spec.preprocessing(),
                "reference_skipped": len(meta.get("skipped", [])), "reference_skipped_files": meta.get("skipped", []),
                # The entry is shared across feature batch sizes (float32 round-off only): the one it was made at.
                "reference_feature_batch_size": meta.get("batch_size")}
        self._entries[extractor.key] = (entry, info)
        return entry, info

    def _compute(self, entry: Path, desc: dict, key: str, extractor) -> None:
        skipped: list[str] = []
        parts, done = [], 0
        for batch in ref_images.batches(ref_images.iter_images(self.spec, skipped), extractor.batch_size):
            parts.append(extractor.extract(batch, "reference images", done))
            done += len(batch)
        if not parts:
            raise EvalrunError(f"reference {self.spec.describe()}: no readable images")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=key[:32] + ".partial."))
        try:
            for layer in extractor.layers:
                np.save(tmp / f"features_{layer}.npy", np.concatenate([p[layer] for p in parts]).astype(np.float32))
            n = sum(len(next(iter(p.values()))) for p in parts)
            meta = {**desc, "key": key, "reference": self.spec.describe(), "n": n, "skipped": skipped,
                    "batch_size": extractor.batch_size}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            shared_mode(tmp, directory=True)  # mkdtemp makes 0700: the cache may be shared by a lab
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def features(self, extractor, layer: str, metric: str) -> tuple[np.ndarray, dict[str, Any]]:
        """Reference features of ``layer`` (computed once, then read from the cache) and their info."""
        self.spec.require_images(metric)
        entry, info = self.entry(extractor)
        if self.spec.kind == "adm":
            from evalrun.reference.adm import describe_file

            info = {**info, **describe_file(self.spec.path)}
        return np.load(entry / f"features_{layer}.npy"), info

    def stats(self, extractor, layer: str, metric: str) -> tuple[Any, dict[str, Any]]:
        """Gaussian statistics (FID) of the reference: from an .npz, or from cached features."""
        from evalrun.metrics.functional.fid import GaussianStats

        if self.spec.kind == "npz":
            stats, meta = load_npz(self.spec.path)
            info: dict[str, Any] = {"reference": self.spec.describe(), "reference_n": stats.n,
                                    "reference_npz_meta": meta or None}
            if meta.get("extractor") is not None:
                written, running = meta["extractor"], extractor.identity()
                info["reference_extractor_matches"] = _same_network(written, running) and \
                    meta.get("layer", layer) == layer
                if info["reference_extractor_matches"] and written.get("versions") != running.get("versions"):
                    info["reference_extractor_versions"] = {"npz": written.get("versions"), "run": running.get("versions")}
            elif not meta:
                info["reference_warning"] = (f"{self.spec.path} has only mu and sigma: its sample count and feature "
                                             f"extractor cannot be checked; make sure it holds {extractor.name} "
                                             f"{layer} statistics of enough images")
                log.warning(info["reference_warning"])
            else:  # evalrun's provenance, but naming no extractor (written by hand): nothing to compare with
                info["reference_warning"] = (f"{self.spec.path} records no feature extractor: it cannot be checked; "
                                             f"make sure it holds {extractor.name} {layer} statistics")
                log.warning(info["reference_warning"])
            return stats, info
        if self.spec.kind == "adm":
            from evalrun.reference.adm import describe_file, file_stats

            found = file_stats(self.spec, extractor, layer)
            if found is not None:
                return found
            self.spec.require_images(metric)
            entry, info = self.entry(extractor)
            info = {**info, "reference_stats_source": "arr_0 images (features cached)", **describe_file(self.spec.path)}
        else:
            entry, info = self.entry(extractor)
        path = entry / f"stats_{layer}.npz"
        if path.exists():
            try:
                return load_npz(path)[0], info
            except EvalrunError as exc:  # the cache's own file, damaged: computed again from the features
                log.warning("%s; computing the statistics again", exc)
                path.unlink(missing_ok=True)
        features = np.load(entry / f"features_{layer}.npy")
        if len(features) < 2:  # a covariance needs two images (unreadable files are skipped)
            raise EvalrunError(f"reference {self.spec.describe()} has {len(features)} readable image(s); {metric} "
                               f"needs at least 2: add images to reference.path")
        stats = GaussianStats.from_features(features)
        save_npz(path, stats, {**json.loads((entry / "meta.json").read_text()), "layer": layer})
        return stats, info


def _readable(entry: Path, layers) -> bool:
    """Whether a cache entry's files are whole: its meta.json parses and each layer's features map with the
    length their header gives (a file cut short by a full disk or a copy fails here, not in a metric)."""
    try:
        json.loads((entry / "meta.json").read_text())
        for layer in layers:
            np.load(entry / f"features_{layer}.npy", mmap_mode="r")
        return True
    except (OSError, ValueError, EOFError):
        return False


def _here(spec: ReferenceSpec, meta: dict[str, Any], skipped: str) -> str:
    """A skipped file as recorded in a cache entry, named in this spec's folder: the entry is keyed by
    content, so it may have been computed from a copy of the folder elsewhere."""
    recorded = str(meta.get("reference", ""))
    if spec.kind == "folder" and recorded.startswith("folder:"):
        try:
            return str(Path(spec.path).expanduser() / Path(skipped).relative_to(Path(recorded[len("folder:"):]).expanduser()))
        except ValueError:
            pass
    return skipped


def _same_network(written: dict[str, Any], running: dict[str, Any]) -> bool:
    """Whether an .npz's extractor identity names the network this run extracts with: the same weights
    (by content), preprocessing, layers and dtype. Library versions are recorded beside (they move the
    last float32 digits, not what is measured) and so is whether the weights are a smoke twin (a fact
    about their content, read from their path, which a copy elsewhere does not share)."""
    def network(identity: dict[str, Any]) -> dict[str, Any]:
        weights = {k: v for k, v in (identity.get("weights") or {}).items() if k != "random_weights"}
        return {**{k: v for k, v in identity.items() if k != "versions"}, "weights": weights}

    return network(written) == network(running)

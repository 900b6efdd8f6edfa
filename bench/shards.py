"""One tiny FID run, unsharded vs split in 2 shards run by joblib with 2 workers, side by side.

Each job gets ``--threads-per-job`` CPU threads (default 1: the CPU analogue of one GPU per job,
which is what sharding is for; an unsharded job cannot use a second GPU). With 2 threads the
unsharded run already keeps both cores of a 2-core machine busy in Inception's convolutions,
and sharding can only save start-up and sampling time.

Both sides start from the same warm state (tiny models built, reference features cached) in
caches of their own, so neither reuses the other's images or features; the sharded side
includes its merge. Prints the wall-time ratio sharded / unsharded (goal: at most 0.65 on a
2-core machine) and checks that the merged numbers equal the unsharded run's.

    python bench/shards.py [--images 512] [--steps 10] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


THREADS: dict[str, str] = {}


def evalrun(args: list[str], cache: Path) -> float:
    env = {**os.environ, "EVALRUN_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HYDRA_FULL_ERROR": "1", **THREADS}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "evalrun", *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"evalrun failed:\n{done.stderr[-3000:]}")
    return elapsed


def values(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())["values"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads-per-job", type=int, default=1, help="OMP/MKL threads of each evalrun job")
    args = parser.parse_args()
    THREADS.update(OMP_NUM_THREADS=str(args.threads_per_job), MKL_NUM_THREADS=str(args.threads_per_job))
    root = Path(tempfile.mkdtemp(prefix="evalrun-bench-shards-"))
    reference = root / "reference"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((32, 32), Image.BICUBIC).save(
            reference / f"{i:03d}.png")
    common = ["model=tiny_ddpm", f"num_images={args.images}", f"steps={args.steps}", "metrics=[fid]",
              "reference=folder", f"reference.path={reference}"]
    warm = root / "warm-cache"  # tiny models and reference features, copied to both sides
    evalrun([*common, "num_images=2", "metrics.fid.batch_size=50", f"hydra.run.dir={root / 'warmup'}"], warm)
    shutil.rmtree(warm / "images", ignore_errors=True)
    shutil.rmtree(warm / "features", ignore_errors=True)
    ratios = []
    for rep in range(args.repeats):
        caches = {side: root / f"{side}-cache-{rep}" for side in ("whole", "sharded")}
        for cache in caches.values():
            shutil.copytree(warm, cache)
        t_whole = evalrun([*common, f"hydra.run.dir={root / f'whole-{rep}'}"], caches["whole"])
        sweep = root / f"sharded-{rep}"
        t_sharded = evalrun([*common, "num_shards=2", "shard=0,1", "hydra/launcher=evalrun_joblib",
                             "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", "-m"], caches["sharded"])
        merged = next(p.parent for p in sweep.glob("*/run.json"))
        a, b = values(root / f"whole-{rep}"), values(merged)
        same = abs(a["fid"] - b["fid"]) <= 1e-6 * abs(a["fid"])
        ratios.append(t_sharded / t_whole)
        print(f"repeat {rep}: unsharded {t_whole:.1f} s, 2 shards via joblib {t_sharded:.1f} s, ratio {ratios[-1]:.2f}; "
              f"FID {a['fid']:.6f} vs merged {b['fid']:.6f} ({'equal' if same else 'DIFFERENT'})")
        if not same:
            raise SystemExit("merged FID differs from the unsharded run")
    print(f"sharded / unsharded wall time: median {sorted(ratios)[len(ratios) // 2]:.2f} over {len(ratios)} repeat(s) "
          f"({args.images} images, {os.cpu_count()} CPU cores, {args.threads_per_job} thread(s) per job; goal <= 0.65)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

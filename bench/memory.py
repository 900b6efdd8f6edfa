"""Peak memory of a tiny-DDPM FID run at 256 and at 4,096 images: streaming keeps it flat.

Each run is its own process (peak RSS from ``getrusage``), with the image store and feature
cache off so both compute everything; prints both peaks and the ratio (goal: at most 1.25).
Inception on CPU makes the 4,096-image run take several minutes.

    python bench/memory.py [--small 256] [--large 4096]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import resource, sys
sys.path.insert(0, {repo!r})
import evalrun
evalrun.evaluate({overrides!r}, run_dir={run_dir!r})
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(n: int, reference: Path, tmp: Path) -> float:
    overrides = ["model=tiny_ddpm", f"num_images={n}", "steps=2", "metrics=[fid]", "reference=folder",
                 f"reference.path={reference}", "paths.image_store=none", "paths.feature_cache=none"]
    code = CHILD.format(repo=str(REPO), overrides=overrides, run_dir=str(tmp / f"run{n}"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    kib = int(next(line for line in done.stdout.splitlines() if line.startswith("PEAK_KIB")).split()[1])
    return kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=256)
    parser.add_argument("--large", type=int, default=4096)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="evalrun-bench-memory-"))
    reference = tmp / "reference"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(32):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(reference / f"{i:03d}.png")
    peak_rss_mib(8, reference, tmp)  # warm-up: tiny models and reference features cached outside the timing
    small, large = peak_rss_mib(args.small, reference, tmp), peak_rss_mib(args.large, reference, tmp)
    print(f"peak RSS: {args.small} images {small:.0f} MiB, {args.large} images {large:.0f} MiB, "
          f"ratio {large / small:.3f} (goal <= 1.25)")


if __name__ == "__main__":
    main()

"""The CLI's sweep machinery per job: ``python -m evalrun ... -m`` with evalrun's sweeper (the default)
against Hydra's basic sweeper (``hydra/sweeper=basic``), the same sweep side by side.

Hydra's basic sweeper composes every job in full twice (once to check the batch, once to launch it);
evalrun's rebuilds each job's config from the sweep's composition (evalrun/sweep_configs.py). Both
sides run the same 4-step sweep of 4 schedulers x 2 seeds on the tiny model in a fresh process each,
alternating who goes first; the images are checked identical (pixel hashes), and the median wall
times, their ratio and the time saved per job are printed.

    python bench/cli_sweep.py [--repeats 3] [--prompts 8]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCHEDULERS = "ddim,dpm,euler,unipc"
SEEDS = "0,1"


def sweep(out: Path, prompt_file: Path, sweeper: str | None) -> float:
    command = [sys.executable, "-m", "evalrun", f"scheduler={SCHEDULERS}", f"seed={SEEDS}", "steps=4", "prompts=file",
               f"prompts.path={prompt_file}", "batch_size=4", "device=cpu", "paths.image_store=none",
               "paths.feature_cache=none", "metrics=[]", f"hydra.sweep.dir={out}", "-m"]
    if sweeper:
        command.insert(-1, f"hydra/sweeper={sweeper}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"sweep failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return took


def pixel_hashes(sweep_dir: Path) -> dict[str, list[str]]:
    found = {}
    for images in sorted(sweep_dir.glob("*/images.csv")):
        with open(images, newline="") as fh:
            found[images.parent.name] = [row["pixels"] for row in csv.DictReader(fh)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=8)
    args = parser.parse_args()
    n_jobs = len(SCHEDULERS.split(",")) * len(SEEDS.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prompt_file = tmp / "prompts.txt"
        prompt_file.write_text("\n".join(f"a photo of object number {i} on a table, studio light"
                                         for i in range(args.prompts)))
        sweep(tmp / "warm-up", prompt_file, None)  # tiny model built, files cached by the OS
        times = {"evalrun": [], "basic": []}
        sides = [("evalrun", None), ("basic", "basic")]
        for r in range(args.repeats):
            for name, sweeper in (sides if r % 2 == 0 else sides[::-1]):
                times[name].append(sweep(tmp / f"{name}-{r}", prompt_file, sweeper))
            if pixel_hashes(tmp / f"evalrun-{r}") != pixel_hashes(tmp / f"basic-{r}") or \
                    len(pixel_hashes(tmp / f"evalrun-{r}")) != n_jobs:
                raise SystemExit("the two sweeps made different images: the comparison would be unfair")
            print(f"  repeat {r}: evalrun's sweeper {times['evalrun'][-1]:.2f} s, Hydra's basic sweeper "
                  f"{times['basic'][-1]:.2f} s")
    ours, basic = float(np.median(times["evalrun"])), float(np.median(times["basic"]))
    print(f"CLI sweep of {n_jobs} 4-step jobs x {args.prompts} prompts (tiny model, CPU, whole processes): "
          f"evalrun's sweeper {ours:.2f} s, Hydra's basic {basic:.2f} s, ratio {ours / basic:.3f}; "
          f"{(basic - ours) / n_jobs * 1000:.0f} ms less per job; images identical")


if __name__ == "__main__":
    main()

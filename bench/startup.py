"""How fast a mistyped value is answered: ``evalrun seed=-1`` against ``python -c "import diffusers"``.

Validation runs before torch, diffusers or transformers are imported, so a bad value costs the
interpreter, Hydra's compose and the check, not the libraries. Both commands run as whole
processes, alternating, several times; prints the median of each and the ratio
(goal: at most 0.5).

    python bench/startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], expect_fail: bool) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - start
    if (done.returncode != 0) != expect_fail:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    if expect_fail and "evalrun: error: seed must be a non-negative integer" not in done.stderr:
        raise SystemExit(f"unexpected error text:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    bad = [sys.executable, "-m", "evalrun", "seed=-1", "hydra.run.dir=/tmp/evalrun-startup-bench"]
    lib = [sys.executable, "-c", "import diffusers"]
    timed(bad, True), timed(lib, False)  # warm the file cache
    runs: dict[str, list[float]] = {"bad": [], "lib": []}
    for r in range(args.repeats):
        order = (("bad", bad, True), ("lib", lib, False))
        for name, cmd, fails in (order if r % 2 == 0 else order[::-1]):
            runs[name].append(timed(cmd, fails))
    bad_s, lib_s = statistics.median(runs["bad"]), statistics.median(runs["lib"])
    print(f"evalrun seed=-1 (answered with one line): median {bad_s:.2f} s over {args.repeats}")
    print(f"python -c 'import diffusers':              median {lib_s:.2f} s")
    print(f"ratio {bad_s / lib_s:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()

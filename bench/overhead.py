"""evalrun's overhead over a bare diffusers loop doing the same work, measured side by side.

Both sides generate the same images (tiny model, 2 schedulers x 2 seeds x N prompts, one
CPU generator per image, PNGs written) in this one process, alternating, and the script
checks the pixels are identical before printing the time ratio evalrun / bare.
Target: at most 1.15. Run: ``python bench/overhead.py [--prompts 8] [--steps 10] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalrun.__main__  # noqa: F401  (registers the config resolver)

    from evalrun.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


PROMPTS = [f"a photo of object number {i} on a table, studio light" for i in range(1000)]


def through_evalrun(out: Path, schedulers, seeds, n_prompts: int, steps: int, metrics: str) -> float:
    """The CLI's work per job: compose the config (as Hydra's launcher does), then run it."""
    from evalrun.pipelines import clear_cache
    from evalrun.run import run

    clear_cache()  # load the checkpoint once per sweep, as the bare loop does: not from warm-up
    prompt_file = out.parent / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS[:n_prompts]))
    start = time.perf_counter()
    for scheduler in schedulers:
        for seed in seeds:
            cfg = compose(f"scheduler={scheduler}", f"seed={seed}", f"steps={steps}", "prompts=file",
                          f"prompts.path={prompt_file}", f"metrics={metrics}", "batch_size=4", "device=cpu")
            run(cfg, out / f"{scheduler}-{seed}")
    return time.perf_counter() - start


def bare_loop(out: Path, schedulers, seeds, n_prompts: int, steps: int) -> float:
    """What a researcher would write by hand: the guide's loop, done right (a generator per image)."""
    import torch
    from diffusers import DPMSolverMultistepScheduler, DDIMScheduler, StableDiffusionPipeline
    from PIL import Image

    from evalrun import tiny
    from evalrun.generate import generator_seed

    classes = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler}
    prompts = PROMPTS[:n_prompts]
    start = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(tiny.resolve("evalrun/tiny-sd"), dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    original = pipe.scheduler
    for scheduler in schedulers:
        pipe.scheduler = classes[scheduler].from_config(original.config)
        for seed in seeds:
            d = out / f"{scheduler}-{seed}"
            d.mkdir(parents=True)
            for s in range(0, len(prompts), 4):
                batch = prompts[s:s + 4]
                gens = [torch.Generator("cpu").manual_seed(generator_seed(seed, s + i, 0)) for i in range(len(batch))]
                images = pipe(batch, num_inference_steps=steps, guidance_scale=7.5, height=32, width=32,
                              generator=gens, output_type="np").images
                for i, img in enumerate(images):
                    Image.fromarray((img * 255).round().astype("uint8")).save(d / f"{s + i:05d}_00.png")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", default="[]", help="evalrun metrics list, e.g. [clip_score] to include scoring")
    args = parser.parse_args()
    os.environ.setdefault("EVALRUN_CACHE", tempfile.mkdtemp(prefix="evalrun-bench-cache-"))
    schedulers, seeds = ("ddim", "dpm"), (0, 1)
    from PIL import Image

    # Warm up both paths once (imports, tiny model build, first-call kernels) outside the timing.
    with tempfile.TemporaryDirectory() as tmp:
        through_evalrun(Path(tmp) / "e", schedulers[:1], seeds[:1], 1, 2, args.metrics)
        bare_loop(Path(tmp) / "b", schedulers[:1], seeds[:1], 1, 2)
    ratios, best_eval, best_bare = [], float("inf"), float("inf")
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            # Alternate which side goes first, so drift in machine load does not favour one.
            if r % 2 == 0:
                t_bare = bare_loop(tmp / "bare", schedulers, seeds, args.prompts, args.steps)
                t_eval = through_evalrun(tmp / "evalrun", schedulers, seeds, args.prompts, args.steps, args.metrics)
            else:
                t_eval = through_evalrun(tmp / "evalrun", schedulers, seeds, args.prompts, args.steps, args.metrics)
                t_bare = bare_loop(tmp / "bare", schedulers, seeds, args.prompts, args.steps)
            for png in (tmp / "bare").rglob("*.png"):
                mine = tmp / "evalrun" / png.parent.name / "images" / png.name
                if not np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(mine))):
                    raise SystemExit(f"images differ: {png} vs {mine}: the comparison would be unfair")
            ratios.append(t_eval / t_bare)
            best_eval, best_bare = min(best_eval, t_eval), min(best_bare, t_bare)
            print(f"repeat {r}: evalrun {t_eval:.2f} s, bare diffusers {t_bare:.2f} s, ratio {t_eval / t_bare:.3f}")
    print(f"evalrun/bare time ratio: median {float(np.median(ratios)):.3f}, of best times {best_eval / best_bare:.3f} "
          f"(target <= 1.15; {len(schedulers)} schedulers x {len(seeds)} seeds x {args.prompts} prompts, "
          f"{args.steps} steps, metrics={args.metrics}, identical images checked)")


if __name__ == "__main__":
    main()

"""GPU benchmarks on a random-weight Stable Diffusion 1.5 architecture (no download needed).

1. Sampling throughput at batch 8 and 32: evalrun (``evalrun.evaluate``, PNGs with their hashes
   written, manifest, no metrics) against the bare pipeline call on the same prompts, images/s
   side by side, alternating (goal: evalrun at least 0.95 of the bare pipeline).
2. A FID run over many images against cached reference statistics: the share of the run's time
   spent outside sampling (PNG writing, Inception, statistics, bookkeeping) (goal: under 3%). Two
   measures: the run's total over its own pipeline calls, and over what the bare pipeline takes to
   sample as many images at the same settings (its rate measured on ``--fid-bare-images`` images).
   On a GPU the next batch samples while this one is scored, so the second is the one that counts.

Prints the device and every figure; ``--out FILE`` appends them as Markdown (bench/RESULTS.md).

    python bench/gpu.py [--size 512] [--steps 25] [--fid-images 10000] [--fid-size 256] [--fid-steps 10]
    python bench/gpu.py --tiny    # a CPU check of the script itself (small sizes)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_sd15(target: Path, tiny: bool = False) -> None:
    """SD 1.5's UNet, VAE and CLIP ViT-L/14 text encoder configs with random (seeded) weights."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from evalrun.tiny.sd import write_char_tokenizer

    write_char_tokenizer(target / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(target / "tokenizer")
    torch.manual_seed(0)
    if tiny:
        unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
        vae = AutoencoderKL(block_out_channels=(16, 32), norm_num_groups=8, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                              num_hidden_layers=2, projection_dim=32)
    else:  # stable-diffusion-v1-5's unet/vae/text_encoder config.json values
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            sample_size=512, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4)
        text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                              num_hidden_layers=12, projection_dim=768, hidden_act="quick_gelu")
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1, set_alpha_to_one=False)
    StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(text), tokenizer=tokenizer, unet=unet,
                            scheduler=scheduler, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(target)


def bare_throughput(path: Path, prompts: list[str], batch: int, steps: int, size: int, device: str, dtype) -> float:
    import torch
    from diffusers import StableDiffusionPipeline

    from evalrun.jobs import generator_seed

    pipe = _PIPES.get(str(path))
    if pipe is None:
        pipe = StableDiffusionPipeline.from_pretrained(path, dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False).to(device)
        pipe.set_progress_bar_config(disable=True)
        _PIPES[str(path)] = pipe
    calls = [prompts[i:i + batch] for i in range(0, len(prompts), batch)]
    pipe(calls[0], num_inference_steps=2, height=size, width=size, output_type="np")  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for n, call in enumerate(calls):
        gens = [torch.Generator("cpu").manual_seed(generator_seed(0, n * batch + i, 0)) for i in range(len(call))]
        pipe(call, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size, generator=gens,
             output_type="np")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(prompts) / (time.perf_counter() - start)


_PIPES: dict = {}


def evalrun_throughput(path: Path, prompt_file: Path, n: int, batch: int, steps: int, size: int, device: str,
                       dtype: str, out: Path) -> float:
    import evalrun

    common = [f"model.path={path}", "prompts=file", f"prompts.path={prompt_file}", f"height={size}", f"width={size}",
              f"steps={steps}", "metrics=[]", f"device={device}", f"dtype={dtype}", "paths.image_store=none",
              "paths.feature_cache=none"]
    # Warm-up with a full batch, as the bare side's: a batch shape's first call pays kernel selection.
    evalrun.evaluate([*common, f"prompts.limit={batch}", "steps=2", f"batch_size={batch}"], run_dir=out / f"warm{batch}")
    start = time.perf_counter()
    result = evalrun.evaluate([*common, f"prompts.limit={n}", f"batch_size={batch}"], run_dir=out / f"b{batch}")
    total = time.perf_counter() - start
    return n / result.record["provenance"]["seconds"]["generate_and_score"], n / total


def fid_share(path: Path, prompt_file: Path, n: int, steps: int, size: int, device: str, dtype: str, out: Path,
              reference: Path) -> dict:
    import pandas as pd

    import evalrun

    common = [f"model.path={path}", "prompts=file", f"prompts.path={prompt_file}", f"height={size}", f"width={size}",
              f"steps={steps}", "guidance_scale=7.5", "metrics=[fid]", "metrics.fid.feature_extractor_weights_path=evalrun/tiny-inception",
              "reference=npz", f"reference.path={reference}", f"device={device}", f"dtype={dtype}",
              "batch_size=32", "paths.image_store=none", "paths.feature_cache=none"]
    evalrun.evaluate([*common, "prompts.limit=64", "steps=2"], run_dir=out / "fid-warm")
    start = time.perf_counter()
    result = evalrun.evaluate([*common, f"prompts.limit={n}"], run_dir=out / "fid")
    total = time.perf_counter() - start
    sampling = float(pd.read_csv(out / "fid" / "images.csv")["sample_seconds"].sum())
    return {"images": n, "total_s": total, "sampling_s": sampling, "outside_sampling": (total - sampling) / total,
            "fid": result.values["fid"]}


def bare_fid_share(fid: dict, path: Path, prompts: list[str], steps: int, size: int, device: str, dtype) -> dict:
    """The FID run's total over the bare pipeline's time for as many images (batch 32, same settings)."""
    rate = bare_throughput(path, prompts, 32, steps, size, device, dtype)
    bare = fid["images"] / rate
    return {**fid, "bare_rate": rate, "bare_s": bare, "outside_bare": (fid["total_s"] - bare) / fid["total_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--images", type=int, default=256, help="images per throughput measurement")
    parser.add_argument("--fid-images", type=int, default=10000)
    parser.add_argument("--fid-size", type=int, default=256)
    parser.add_argument("--fid-steps", type=int, default=10)
    parser.add_argument("--fid-bare-images", type=int, default=2048, help="images to time the bare pipeline's rate on")
    parser.add_argument("--tiny", action="store_true", help="check the script on CPU with a tiny model")
    parser.add_argument("--part", choices=["all", "throughput", "fid"], default="all")
    parser.add_argument("--out", type=Path, default=None, help="append the results (Markdown) to this file")
    args = parser.parse_args()
    import numpy as np
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype_name = "float16" if device == "cuda" else "float32"
    if args.tiny:
        args.size, args.steps, args.images, args.fid_images, args.fid_size, args.fid_steps = 32, 2, 16, 96, 32, 2
        args.fid_bare_images = 64
    tmp = Path(tempfile.mkdtemp(prefix="evalrun-bench-gpu-"))
    os.environ.setdefault("EVALRUN_CACHE", str(tmp / "cache"))
    model = tmp / "sd15-random"
    build_sd15(model, tiny=args.tiny)
    prompts = [f"a photograph of subject {i}, detailed, studio light" for i in range(max(args.images, args.fid_images))]
    prompt_file = tmp / "prompts.txt"
    prompt_file.write_text("\n".join(prompts))
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    lines = [f"### {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}", "",
             f"Random-weight SD 1.5 architecture, {dtype_name}, {args.size}x{args.size}, {args.steps} steps, "
             f"guidance 7.5, {args.images} images per measurement.", "",
             "| batch | bare pipeline img/s | evalrun img/s (sampling+writing) | ratio | evalrun img/s (whole call) |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for batch in ((8, 32) if args.part in ("all", "throughput") else ()):
        bare = bare_throughput(model, prompts[:args.images], batch, args.steps, args.size, device,
                               getattr(torch, dtype_name))
        ours, whole = evalrun_throughput(model, prompt_file, args.images, batch, args.steps, args.size, device,
                                         dtype_name, tmp / "runs")
        lines.append(f"| {batch} | {bare:.2f} | {ours:.2f} | {ours / bare:.3f} | {whole:.2f} |")
        print(lines[-1], flush=True)
    if args.part == "throughput":
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n\n")
        return
    # Reference statistics computed once and cached (as a sweep would find them).
    from evalrun.metrics.features import build_extractor
    from evalrun.metrics.functional.fid import GaussianStats
    from evalrun.reference.npz import save_npz

    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.integers(0, 256, (256, 3, args.fid_size, args.fid_size), dtype=np.uint8))
    extractor = build_extractor("inception", device, path="evalrun/tiny-inception")
    feats = extractor.extract(real)["2048"]
    save_npz(tmp / "ref.npz", GaussianStats.from_features(feats),
             {"extractor": extractor.identity(), "layer": "2048", "note": "random images, benchmark only"})
    fid = fid_share(model, prompt_file, args.fid_images, args.fid_steps, args.fid_size, device, dtype_name,
                    tmp / "runs", tmp / "ref.npz")
    fid = bare_fid_share(fid, model, prompts[:args.fid_bare_images], args.fid_steps, args.fid_size, device,
                         getattr(torch, dtype_name))
    lines += ["", f"FID run: {fid['images']} images at {args.fid_size}x{args.fid_size}, {args.fid_steps} steps, batch 32, "
              f"Inception (random weights, the real architecture) on {device}, cached reference statistics: "
              f"total {fid['total_s']:.1f} s, its pipeline calls {fid['sampling_s']:.1f} s "
              f"({100 * fid['outside_sampling']:.2f}% outside them); the bare pipeline samples "
              f"{fid['bare_rate']:.2f} img/s ({args.fid_bare_images} images), {fid['bare_s']:.1f} s for as many: "
              f"outside sampling {100 * fid['outside_bare']:.2f}% (goal < 3%)."]
    print("\n".join(lines[-1:]))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n\n")
    print(json.dumps(fid))


if __name__ == "__main__":
    main()

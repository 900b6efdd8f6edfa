"""Image editing: edit prompt sets (local files, hub), the edit task (pix2pix, img2img), and
CLIP directional / image similarity checked against transformers' CLIPModel and hand-built cases."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import PHOTOS, cli, compose
from evalrun import tiny
from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics import ImageBatch, MetricContext, build_metric
from evalrun.metrics.features.store import FeatureStore
from evalrun.metrics.functional.edit import directional_similarity, image_similarity
from evalrun.prompts import load_prompts
from evalrun.tasks import get_task

needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared/data/photos not present")
PHOTO_ROWS = [  # mixed sizes; brick is grayscale (mode L)
    ("astronaut.png", "an astronaut in a white suit", "make it a painting", "a painting of an astronaut in a white suit"),
    ("brick.png", "a grey brick wall", "paint the bricks red", "a red brick wall"),
    ("chelsea.png", "a tabby cat", "turn the cat into a tiger", "a tiger"),
]


def write_photo_csv(folder: Path) -> Path:
    """The photos as an edit CSV with paths relative to the CSV's folder."""
    rows = [{"image": os.path.relpath(PHOTOS / f, folder), "input": a, "edit": e, "output": b} for f, a, e, b in PHOTO_ROWS]
    path = folder / "edits.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class FakePix2Pix:
    """Just the call signature: the edit task picks pix2pix or img2img arguments from it."""

    def __call__(self, prompt=None, image=None, num_inference_steps=100, guidance_scale=7.5, image_guidance_scale=1.5):
        raise NotImplementedError


class FakeImg2Img:
    def __call__(self, prompt=None, image=None, strength=0.8, num_inference_steps=50, guidance_scale=7.5):
        raise NotImplementedError


class Unloaded:
    """What the task's prepare step is given: the pipeline class (nothing here is ever loaded)."""

    def __init__(self, cls):
        self.cls = cls

    def get(self):
        raise AssertionError("the edit task must not load the pipeline to prepare its records")


def prepared(*overrides: str, pipe=FakePix2Pix):
    """Edit records as a run prepares them (checked, input images loaded and sized), without a real pipeline."""
    if not any(o.startswith("model=") for o in overrides):
        overrides = ("model=tiny_pix2pix" if pipe is FakePix2Pix else "model=tiny_img2img", *overrides)
    cfg, task = compose(*overrides), get_task("edit")
    task.validate(cfg)
    task.check_pipeline(pipe, cfg)
    return task.prepare(Unloaded(pipe), task.load_records(cfg), cfg)


# ----------------------------------------------------------------------------- the CLI on real photos
@pytest.fixture(scope="module")
def photo_sweep(tmp_path_factory):
    if not PHOTOS.is_dir():
        pytest.skip("shared/data/photos not present")
    root = tmp_path_factory.mktemp("edit-sweep")
    csv = write_photo_csv(root)
    sweep = root / "sweep"
    cli("model=tiny_pix2pix", "prompts=instructpix2pix_demo", f"prompts.path={csv}",
            "image_guidance_scale=1.0,1.5", "seed=0,1", f"hydra.sweep.dir={sweep}", "-m")
    return sweep


def test_image_guidance_sweep_summary_has_one_row_per_value(photo_sweep):
    runs = pd.concat([pd.read_csv(p) for p in sorted(photo_sweep.glob("*/metrics.csv"))], ignore_index=True)
    assert len(runs) == 4 and set(runs["task"]) == {"edit"}
    summary = pd.read_csv(photo_sweep / "summary.csv")
    assert list(summary["image_guidance_scale"]) == [1.0, 1.5] and summary.columns[0] == "image_guidance_scale"
    for _, row in summary.iterrows():
        group = runs[runs["image_guidance_scale"] == row["image_guidance_scale"]]
        assert row["seeds"] == "0 1"
        for m in ("clip_directional", "clip_image_similarity", "clip_score"):
            assert row[f"{m}_mean"] == pytest.approx(group[m].mean(), rel=1e-12) and row[f"{m}_n"] == 2
    record = json.loads(next(photo_sweep.glob("*/run.json")).read_text())
    assert {k: v for k, v in record["higher_is_better"].items() if record["columns"][k]["kind"] == "score"} == \
        {"clip_directional": True, "clip_image_similarity": True, "clip_score": True}
    info = record["provenance"]["metrics"]["clip_directional"]
    assert info["clip_model"] == "evalrun/tiny-clip" and info["clip_directional_zero_image_direction"] == 0
    # The knob really reached the pipeline: same seed, other image_guidance_scale, other pixels.
    a, b = (next(photo_sweep.glob(f"*image_guidance_scale={v}*seed=0*/images/00000_00.png")) for v in ("1.0", "1.5"))
    assert np.asarray(Image.open(a)).tobytes() != np.asarray(Image.open(b)).tobytes()


def test_run_records_inputs_and_draws_input_edit_grid(photo_sweep):
    run_dir = next(photo_sweep.glob("*image_guidance_scale=1.5*seed=1*"))
    per_image = pd.read_csv(run_dir / "per_image.csv")
    assert list(per_image["prompt"]) == [e for _, _, e, _ in PHOTO_ROWS]  # the instruction
    assert list(per_image["pipeline_prompt"]) == list(per_image["prompt"])  # pix2pix is given the instruction
    assert list(per_image["output_caption"]) == [o for *_, o in PHOTO_ROWS]
    assert list(per_image["input_mode"]) == ["RGB", "L", "RGB"] and list(per_image["input_width"]) == [512, 512, 451]
    assert [Path(p).name for p in per_image["input_path"]] == [f for f, *_ in PHOTO_ROWS]
    assert "input_image" not in per_image  # tensors stay out of CSVs
    assert all(Image.open(run_dir / p).size == (32, 32) for p in per_image["path"])
    with Image.open(run_dir / "grid.png") as grid:  # input | edited, x2 for three lines of captions beside
        assert grid.width == 2 * 64 + 360 and grid.height == 3 * 64
        pixels = np.asarray(grid.convert("RGB"))
    edited = np.asarray(Image.open(run_dir / "images/00000_00.png").resize((64, 64), Image.NEAREST))
    np.testing.assert_array_equal(pixels[:64, 64:128], edited)
    first_input = np.asarray(Image.open(PHOTOS / PHOTO_ROWS[0][0]).convert("RGB").resize((32, 32), Image.LANCZOS))
    np.testing.assert_array_equal(pixels[:64, :64], np.asarray(Image.fromarray(first_input).resize((64, 64), Image.NEAREST)))
    assert (pixels[:64, 128:] < 128).any()  # the text panel has writing in it


def test_clip_metrics_equal_transformers_clipmodel_forward(photo_sweep):
    """The guide's DirectionalSimilarity computation, on CLIPModel's own embeddings of the saved PNGs
    and of the inputs as the pipeline got them (RGB, Lanczos-resized to 32x32)."""
    from transformers import CLIPModel, CLIPProcessor

    run_dir = next(photo_sweep.glob("*image_guidance_scale=1.0*seed=0*"))
    per_image = pd.read_csv(run_dir / "per_image.csv")
    path = tiny.resolve("evalrun/tiny-clip")
    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    inputs = [np.array(Image.open(PHOTOS / f).convert("RGB").resize((32, 32), Image.LANCZOS)) for f, *_ in PHOTO_ROWS]
    edited = [np.array(Image.open(run_dir / p).convert("RGB")) for p in per_image["path"]]
    texts = list(per_image["input_caption"]) + list(per_image["output_caption"])
    batch = processor(text=texts, images=inputs + edited, padding="max_length", max_length=77, truncation=True,
                      return_tensors="pt")
    with torch.no_grad():  # as the guide: input_ids only, embeddings normalised (CLIPModel already does)
        out = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"])
    img = out.image_embeds.double() / out.image_embeds.double().norm(dim=1, keepdim=True)
    txt = out.text_embeds.double() / out.text_embeds.double().norm(dim=1, keepdim=True)
    n = len(per_image)
    expected = F.cosine_similarity(img[n:] - img[:n], txt[n:] - txt[:n]).numpy()
    np.testing.assert_allclose(per_image["clip_directional"], expected, atol=1e-5)
    np.testing.assert_allclose(per_image["clip_image_similarity"], F.cosine_similarity(img[n:], img[:n]).numpy(), atol=1e-6)
    np.testing.assert_allclose(per_image["clip_score"], 100 * (img[n:] * txt[n:]).sum(1).clamp_min(0).numpy(), atol=1e-4)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["clip_directional"].iloc[0] == pytest.approx(expected.mean(), abs=1e-6)


def test_the_hub_edit_set_reads_its_bundled_sample_under_debug_smoke():
    """debug=smoke runs any preset offline: the hub edit set (instructpix2pix_demo) reads the bundled four-image
    set, as parti reads its sample (it went to the hub and failed offline)."""
    from evalrun.tasks.edit_data import load_edit_records

    records = load_edit_records(compose("model=flux_kontext", "prompts=instructpix2pix_demo", "debug=smoke").prompts)
    bundled = load_edit_records(compose("model=flux_kontext", "prompts=edit_demo").prompts)
    assert [r["prompt"] for r in records] == [r["prompt"] for r in bundled] and len(records) == 4


def test_every_edit_pipeline_that_takes_a_size_gets_the_runs_size():
    """The inputs are sized to height x width; FluxImg2ImgPipeline (and SD3/SDXL-pix2pix/Qwen img2img) take a
    size too and, given none, made 1024 px images from a resized-up input while the results said 32 px.
    Pipelines whose call takes no size (SD img2img, InstructPix2Pix) keep the input image's."""
    from types import SimpleNamespace

    import diffusers

    from evalrun.tasks.edit import takes_size

    task = get_task("edit")
    job = SimpleNamespace(record={"pipeline_prompt": "make it red", "input_image": torch.zeros(3, 32, 48, dtype=torch.uint8)})
    for name, sized in (("FluxImg2ImgPipeline", True), ("StableDiffusion3Img2ImgPipeline", True),
                        ("StableDiffusionXLInstructPix2PixPipeline", True), ("FluxKontextPipeline", True),
                        ("StableDiffusionImg2ImgPipeline", False), ("StableDiffusionInstructPix2PixPipeline", False)):
        cls = getattr(diffusers, name)
        kwargs = task.pipeline_kwargs(cls.__new__(cls), [job], {"steps": 2})
        assert takes_size(cls) == sized and (kwargs.get("height"), kwargs.get("width")) == \
            ((32, 48) if sized else (None, None)), name


def test_img2img_strength_sweep_prompts_with_output_caption(tmp_path):
    sweep = tmp_path / "sweep"
    cli("model=tiny_img2img", "prompts=edit_demo", "strength=0.5,1.0", "num_images_per_prompt=2", "steps=2",
            f"hydra.sweep.dir={sweep}", "-m")
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["strength"]) == [0.5, 1.0] and "image_guidance_scale" not in summary
    run_dir = next(sweep.glob("*strength=0.5*"))
    images = pd.read_csv(run_dir / "per_image.csv")
    assert len(images) == 8 and list(images["pipeline_prompt"]) == list(images["output_caption"])
    assert list(images["input_mode"][::2]) == ["RGB", "L", "RGBA", "P"]  # the bundled demo set's modes
    assert images["clip_directional"].notna().all() and images["clip_image_similarity"].lt(1).all()
    with Image.open(run_dir / "grid.png") as grid:
        tile = grid.height // 4  # four inputs; 32 px tiles enlarged by a whole factor for the captions' lines
        assert grid.width == 3 * tile + 360 and tile % 32 == 0  # input | two edits per row, then the captions
    a, b = (np.asarray(Image.open(next(sweep.glob(f"*strength={s}*/images/00000_00.png")))) for s in ("0.5", "1.0"))
    assert a.tobytes() != b.tobytes()


# ----------------------------------------------------------------------------- metric math
def test_directional_similarity_hand_built_directions():
    e = torch.eye(3, dtype=torch.float64)
    one = lambda *v: directional_similarity(*(x[None] for x in v))[0].item()  # noqa: E731
    assert one(e[0], e[1], e[0], e[1]) == pytest.approx(1.0, abs=1e-12)  # image and captions move e0 -> e1
    assert one(e[0], e[1], e[1], e[0]) == pytest.approx(-1.0, abs=1e-12)  # captions move the opposite way
    assert one(e[0], e[1], e[2], -e[2]) == pytest.approx(0.0, abs=1e-12)  # orthogonal change
    # Embeddings are normalised first (as in the guide): their lengths change nothing.
    assert one(3 * e[0], 0.5 * e[1], 7 * e[1], 2 * e[0]) == pytest.approx(-1.0, abs=1e-12)
    # Parallel directions from different starting points still give 1.
    assert one(e[0], e[1], e[2] + e[0], e[2] + e[1]) == pytest.approx(1.0, abs=1e-12)
    assert image_similarity(e[[0, 0]], torch.stack([5 * e[0], e[1]])).tolist() == [1.0, 0.0]


def test_directional_similarity_matches_guide_formula_on_random_embeddings():
    g = torch.Generator().manual_seed(0)
    a, b, c, d = (torch.randn(50, 16, generator=g) for _ in range(4))
    sim, _, _ = directional_similarity(a, b, c, d)
    n = lambda x: x / x.norm(dim=1, keepdim=True)  # noqa: E731 - the guide's normalisation
    expected = F.cosine_similarity(n(b) - n(a), n(d) - n(c))
    torch.testing.assert_close(sim.float(), expected, atol=1e-6, rtol=0)


def test_zero_directions_score_zero_and_are_flagged():
    e = torch.eye(4, dtype=torch.float64)
    noise = 1e-9 * torch.ones(4, dtype=torch.float64)  # re-encoding jitter, not a direction
    sim, zi, zt = directional_similarity(e[[0, 0, 0]], torch.stack([e[0], e[0] + noise, e[1]]),
                                         e[[2, 2, 2]], torch.stack([e[3], e[3], e[2]]))
    assert sim.tolist() == [0.0, 0.0, 0.0] and zi.tolist() == [True, True, False] and zt.tolist() == [False, False, True]
    assert not torch.isnan(sim).any()


# ----------------------------------------------------------------------------- metric classes
def edit_batch(images: torch.Tensor, inputs: list[torch.Tensor], captions: list[tuple[str, str]], paths: list[str]):
    records = [{"input_image": x, "input_caption": a, "output_caption": b, "input_path": p, "prompt": "edit"}
               for x, (a, b), p in zip(inputs, captions, paths)]
    return ImageBatch(images, records)


def test_degenerate_edits_give_zero_count_and_warn(caplog):
    g = torch.Generator().manual_seed(1)
    inputs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(3)]
    edited = torch.stack([inputs[0], torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g),
                          torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)])
    captions = [("a cat", "a dog"), ("a cat", "a cat"), ("a cat", "a red cat")]
    context = MetricContext(store=FeatureStore())
    directional = build_metric("clip_directional", {"clip_model": "evalrun/tiny-clip"}, context)
    similarity = build_metric("clip_image_similarity", {"clip_model": "evalrun/tiny-clip"}, context)
    directional.load()
    similarity.load()
    batch = edit_batch(edited, inputs, captions, ["a.png", "b.png", "c.png"])
    directional.update(batch)
    similarity.update(batch)
    with caplog.at_level(logging.WARNING):
        result = directional.compute()
    assert "1 of 3 edits have a zero image direction" in caplog.text and "1 a zero text direction" in caplog.text
    scores = result.per_image["clip_directional"]
    assert scores[:2] == [0.0, 0.0] and scores[2] != 0.0 and np.isfinite(result.values["clip_directional"])
    assert result.values["clip_directional"] == pytest.approx(np.mean(scores))
    assert result.per_image["clip_directional_zero_direction"] == ["image", "text", ""]
    assert result.info["clip_directional_zero_image_direction"] == 1
    assert result.info["clip_directional_zero_text_direction"] == 1
    sim = similarity.compute()
    assert sim.per_image["clip_image_similarity"][0] == 1.0 and sim.info["clip_image_similarity_identical_to_input"] == 1


def test_each_input_edit_and_caption_is_encoded_once_per_run(monkeypatch):
    from evalrun.images import pixel_hash
    from evalrun.metrics.features import build_extractor

    clip = build_extractor("clip", path="evalrun/tiny-clip", batch_size=3)
    seen = {"images": [], "texts": []}
    real_images, real_texts = clip.encode_images, clip.encode_texts

    def count_images(images):
        seen["images"] += [pixel_hash(x.permute(1, 2, 0).numpy()) for x in images]
        return real_images(images)

    def count_texts(texts):
        seen["texts"] += list(texts)
        return real_texts(texts)

    monkeypatch.setattr(clip, "encode_images", count_images)
    monkeypatch.setattr(clip, "encode_texts", count_texts)
    g = torch.Generator().manual_seed(2)
    inputs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g) for _ in range(2)]
    edited = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    captions = [("a cat", "a dog"), ("a cat", "a red cat")]
    context = MetricContext(store=FeatureStore())  # one run: both metrics share it, as run.py builds them
    metrics = [build_metric(name, {"clip_model": "evalrun/tiny-clip", "batch_size": 3}, context)
               for name in ("clip_directional", "clip_image_similarity")]
    for metric in metrics:
        metric.load()
        assert metric.extractor is clip  # one model per process, shared by both metrics
    # Two images per input (num_images_per_prompt=2), fed in two batches as a run's chunks are.
    for lo in (0, 2):
        batch = edit_batch(edited[lo:lo + 2], [inputs[0], inputs[1]], captions, ["a.png", "b.png"])
        for metric in metrics:
            metric.update(batch)
    assert sorted(seen["texts"]) == ["a cat", "a dog", "a red cat"]
    assert len(seen["images"]) == len(set(seen["images"])) == 2 + 4
    results = [m.compute() for m in metrics]
    assert len(results[0].per_image["clip_directional"]) == len(results[1].per_image["clip_image_similarity"]) == 4
    # A new run (a new feature store) encodes again: numbers never depend on an earlier job.
    fresh = build_metric("clip_image_similarity", {"clip_model": "evalrun/tiny-clip", "batch_size": 3},
                         MetricContext(store=FeatureStore()))
    fresh.load()
    fresh.update(edit_batch(edited[:2], [inputs[0], inputs[1]], captions, ["a.png", "b.png"]))
    assert len(seen["images"]) == 6 + 4


def test_edit_metrics_on_text_to_image_records_say_what_is_missing():
    metric = build_metric("clip_directional", {"clip_model": "evalrun/tiny-clip"}, MetricContext())
    metric.load()
    batch = ImageBatch(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), [{"prompt": "a cat"}])
    with pytest.raises(EvalrunError, match="each record needs 'input_image'.*model.task=edit"):
        metric.update(batch)


# ----------------------------------------------------------------------------- edit prompt sets
def make_images(folder: Path) -> dict[str, Path]:
    """One image per awkward mode: grayscale, RGBA with transparency, palette, 16-bit, CMYK JPEG."""
    paths = {}
    gray = np.tile(np.arange(0, 240, 4, dtype=np.uint8), (40, 1))
    paths["L"] = folder / "gray.png"
    Image.fromarray(gray, "L").save(paths["L"])
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 0] = 200  # red hidden under full transparency on the left half
    rgba[:, 32:, 3] = 255
    paths["RGBA"] = folder / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(paths["RGBA"])
    paths["P"] = folder / "pal.gif"
    Image.fromarray(np.full((30, 30, 3), (0, 0, 255), np.uint8)).convert("P").save(paths["P"])
    paths["I;16"] = folder / "deep.png"
    Image.fromarray(np.full((32, 32), 128 * 257, np.uint16)).save(paths["I;16"])  # mid-grey in 16 bits
    paths["CMYK"] = folder / "cmyk.jpg"
    Image.new("CMYK", (40, 24), (0, 255, 255, 0)).save(paths["CMYK"])
    return paths


def test_local_csv_and_jsonl_with_custom_columns_and_any_image_mode(tmp_path):
    paths = make_images(tmp_path)
    rows = [{"file": p.name, "before": f"a {m} image", "instruction": f"edit the {m} image", "after": f"an edited {m} image"}
            for m, p in paths.items()]
    pd.DataFrame(rows).to_csv(tmp_path / "edits.csv", index=False)
    (tmp_path / "edits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cols = ["prompts.image_column=file", "prompts.input_caption_column=before", "prompts.edit_column=instruction",
            "prompts.output_caption_column=after", "height=24", "width=40"]
    from_csv = prepared("prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'edits.csv'}", *cols)
    from_jsonl = prepared("prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'edits.jsonl'}", *cols)
    for a, b in zip(from_csv, from_jsonl):
        assert torch.equal(a["input_image"], b["input_image"])
        assert {k: v for k, v in a.items() if k != "input_image"} == {k: v for k, v in b.items() if k != "input_image"}
    by_mode = {r["input_mode"]: r for r in from_csv}
    assert set(by_mode) == set(paths) and by_mode["L"]["prompt"] == "edit the L image"
    assert by_mode["L"]["input_caption"] == "a L image" and by_mode["L"]["output_caption"] == "an edited L image"
    assert by_mode["L"]["input_path"] == str(paths["L"].resolve())
    for r in from_csv:
        assert r["input_image"].dtype == torch.uint8 and r["input_image"].shape == (3, 24, 40)
    gray = by_mode["L"]["input_image"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    rgba = by_mode["RGBA"]["input_image"]
    assert rgba[:, :, :15].eq(255).all()  # transparent -> white, not the hidden red
    assert rgba[0, :, 25:].eq(200).all() and rgba[1:, :, 25:].eq(0).all()  # opaque red stays red
    assert by_mode["P"]["input_image"][:, 0, 0].tolist() == [0, 0, 255]
    assert by_mode["I;16"]["input_image"].eq(128).all()  # 16-bit mid-grey stays mid-grey (not clipped to white)
    r, g, b = by_mode["CMYK"]["input_image"][:, 12, 20].tolist()
    assert r > 200 and g < 60 and b < 60  # a red CMYK JPEG stays red


def test_inputs_named_outside_the_tables_folder_are_part_of_the_run_key(tmp_path):
    """An edit table (or a table of images to score) naming an image in another folder: replacing that image in
    place changes the run key, as replacing one beside the table does, so a finished run is never reused stale."""
    from evalrun.keys import input_identities

    (tmp_path / "table").mkdir()
    (tmp_path / "elsewhere").mkdir()
    image = tmp_path / "elsewhere" / "in.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(image)
    pd.DataFrame([{"input_image": str(image), "edit_prompt": "make it red", "input_caption": "a", "output_caption": "b",
                   "image": "../elsewhere/in.png", "prompt": "a"}]).to_csv(tmp_path / "table" / "edits.csv", index=False)
    configs = [compose("model=tiny_pix2pix", "prompts=edit_demo", f"prompts.path={tmp_path / 'table' / 'edits.csv'}"),
               compose("model=images", f"model.path={tmp_path / 'table' / 'edits.csv'}")]
    before = [input_identities(cfg) for cfg in configs]
    Image.new("RGB", (8, 8), (200, 20, 30)).save(image)  # same size and name, other pixels
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1_000_000))
    after = [input_identities(cfg) for cfg in configs]
    for old, new in zip(before, after):
        assert old != new and {k for k in old if old[k] != new.get(k)} <= {"prompt_images", "model_images"}


def test_edit_settings_that_change_the_images_are_columns_and_guidance_that_cannot_apply_is_refused(caplog):
    """prompts.resize and the text the pipeline gets are result columns (a sweep over them is not seeds of one
    configuration); InstructPix2Pix's own rule decides whether its two guidance scales can take effect."""
    import diffusers

    pix2pix = diffusers.StableDiffusionInstructPix2PixPipeline
    task = get_task("edit")
    cfg = compose("model=tiny_pix2pix", "prompts=edit_demo", "image_guidance_scale=0.5")
    task.validate(cfg)
    with pytest.raises(ConfigError, match="image_guidance_scale=0.5 below 1 turns classifier-free guidance off in "
                                          "StableDiffusionInstructPix2PixPipeline"):
        task.check_pipeline(pix2pix, cfg)
    with pytest.raises(ConfigError, match="image_guidance_scale=0.5 below 1"):  # also without text guidance
        task.check_pipeline(pix2pix, compose("model=tiny_pix2pix", "prompts=edit_demo", "guidance_scale=1",
                                             "image_guidance_scale=0.5"))
    with caplog.at_level(logging.WARNING, logger="evalrun.tasks.edit"):
        task.check_pipeline(pix2pix, compose("model=tiny_pix2pix", "prompts=edit_demo", "guidance_scale=1"))
    assert "samples without guidance, so image_guidance_scale=1.5 has no effect" in caplog.text
    caplog.clear()
    task.check_pipeline(pix2pix, compose("model=tiny_pix2pix", "prompts=edit_demo"))  # the preset's scales guide
    assert not caplog.text
    for overrides, expected in ((["prompts.resize=crop"], {"input_resize": "crop", "prompt_key": "prompt"}),
                                (["model=tiny_img2img"], {"input_resize": "stretch", "prompt_key": "output_caption"}),
                                (["model=tiny_img2img", "model.prompt_key=prompt"], {"prompt_key": "prompt"})):
        pipe = FakePix2Pix if not any("img2img" in o for o in overrides) else FakeImg2Img
        cfg, task = compose(*(["model=tiny_pix2pix"] if pipe is FakePix2Pix else []), "prompts=edit_demo",
                            *overrides), get_task("edit")
        task.prepare(Unloaded(pipe), task.load_records(cfg), cfg)
        assert expected.items() <= task.extra_columns(cfg).items(), overrides


def test_crop_keeps_aspect_ratio_and_stretch_does_not(tmp_path):
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, 32:64] = 255  # white middle third
    Image.fromarray(wide).save(tmp_path / "wide.png")
    pd.DataFrame([{"image": "wide.png", "input": "a", "edit": "b", "output": "c"}]).to_csv(tmp_path / "e.csv", index=False)
    base = ["prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'e.csv'}", "height=32", "width=32"]
    crop = prepared(*base, "prompts.resize=crop")[0]["input_image"]
    stretch = prepared(*base)[0]["input_image"]
    assert crop.float().mean() > 250  # the centre square is all white
    assert 70 < stretch.float().mean() < 100  # squeezed: one third white
    with pytest.raises(ConfigError, match="prompts.resize='pad' is not valid; use one of stretch, crop"):
        prepared(*base, "prompts.resize=pad")

    # An EXIF-rotated input (a phone photo: 48x32 stored, 32x48 as seen) records the size as seen, as the
    # pipeline gets it (it recorded the stored 48x32).
    tall = Image.fromarray(np.zeros((32, 48, 3), np.uint8))
    exif = tall.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    tall.save(tmp_path / "rotated.jpg", exif=exif)
    pd.DataFrame([{"image": "rotated.jpg", "input": "a", "edit": "b", "output": "c"}]).to_csv(tmp_path / "r.csv",
                                                                                              index=False)
    record = prepared("prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'r.csv'}", "height=32", "width=32")[0]
    assert (record["input_width"], record["input_height"]) == (32, 48)
    # The input's pixels as seen (what the report pairs and groups edits by, wherever the file is).
    from evalrun.images import pixel_hash

    crop = prepared(*base, "prompts.resize=crop")[0]
    assert crop["input_pixels"] == pixel_hash(wide) and record["input_pixels"] == pixel_hash(np.zeros((48, 32, 3), np.uint8))


@needs_photos
def test_real_photos_mixed_sizes_and_grayscale(tmp_path):
    records = prepared("prompts=instructpix2pix_demo", f"prompts.path={write_photo_csv(tmp_path)}")
    assert [r["input_mode"] for r in records] == ["RGB", "L", "RGB"]
    assert [(r["input_width"], r["input_height"]) for r in records] == [(512, 512), (512, 512), (451, 300)]
    assert all(r["input_image"].shape == (3, 32, 32) for r in records)
    expected = np.asarray(Image.open(PHOTOS / "chelsea.png").convert("RGB").resize((32, 32), Image.LANCZOS))
    np.testing.assert_array_equal(records[2]["input_image"].permute(1, 2, 0).numpy(), expected)


def test_hub_dataset_with_the_guides_column_names(monkeypatch):
    import datasets

    images = [Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("L", (64, 48), 128)]
    fake = datasets.Dataset.from_dict(
        {"input": ["a red square", "a grey field"], "edit": ["make it blue", "add a tree"],
         "output": ["a blue square", "a grey field with a tree"], "image": images},
        features=datasets.Features({"input": datasets.Value("string"), "edit": datasets.Value("string"),
                                    "output": datasets.Value("string"), "image": datasets.Image()}))
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None, **kw: calls.append((name, split)) or fake)
    records = prepared("prompts=instructpix2pix_demo", "prompts.limit=2", pipe=FakeImg2Img)
    assert calls == [("sayakpaul/instructpix2pix-demo", "train")]
    assert [r["prompt"] for r in records] == ["make it blue", "add a tree"]
    assert [r["input_path"] for r in records] == ["sayakpaul/instructpix2pix-demo[train][0]",
                                                  "sayakpaul/instructpix2pix-demo[train][1]"]
    assert records[0]["input_image"][:, 0, 0].tolist() == [255, 0, 0]
    assert records[1]["input_mode"] == "L" and records[1]["input_image"].shape == (3, 32, 32)
    # img2img is prompted with the output caption by default; model.prompt_key chooses otherwise.
    assert [r["pipeline_prompt"] for r in records] == ["a blue square", "a grey field with a tree"]


def test_hub_offline_error_says_how_to_use_a_local_file(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'sayakpaul/instructpix2pix-demo' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(EvalrunError, match="prompts.path=FILE"):
        load_prompts(compose("prompts=instructpix2pix_demo").prompts)


def test_bad_edit_inputs_name_the_row_path_column_and_key(tmp_path):
    pd.DataFrame([{"image": "missing.png", "input": "a", "edit": "b", "output": "c"}]).to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(EvalrunError, match=r"row 0: image file '.*missing.png' not found"):
        load_prompts(compose("prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'e.csv'}").prompts)
    with pytest.raises(ConfigError, match=r"no column 'caption' \(prompts.output_caption_column\)"):
        load_prompts(compose("prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'e.csv'}",
                             "prompts.output_caption_column=caption").prompts)
    (tmp_path / "x.png").write_text("not an image")
    pd.DataFrame([{"image": "x.png", "input": "a", "edit": "b", "output": "c"}]).to_csv(tmp_path / "f.csv", index=False)
    with pytest.raises(EvalrunError, match=r"row 0: '.*x.png' is not a readable image"):
        load_prompts(compose("prompts=instructpix2pix_demo", f"prompts.path={tmp_path / 'f.csv'}").prompts)
    demo = ["prompts=edit_demo", "model=tiny_pix2pix"]
    with pytest.raises(ConfigError, match="strength=0.5 has no effect on FakePix2Pix"):
        prepared(*demo, "strength=0.5")
    with pytest.raises(ConfigError, match="model.prompt_key='caption' is not valid"):
        prepared(*demo, "model.prompt_key=caption")
    with pytest.raises(ConfigError, match="strength must be in"):
        prepared("prompts=edit_demo", "model=tiny_img2img", "strength=1.5", pipe=FakeImg2Img)
    with pytest.raises(ConfigError, match=r"reads an edit prompt set .* not prompts='doc'"):
        prepared("prompts=doc")


def test_edit_configs_compose_with_their_metrics():
    cfg = compose("model=instruct_pix2pix", "prompts=instructpix2pix_demo")
    assert list(cfg.metrics) == ["clip_directional", "clip_image_similarity", "clip_score"]
    assert (cfg.steps, cfg.guidance_scale, cfg.image_guidance_scale, cfg.strength) == (100, 7.5, 1.5, None)
    assert cfg.metrics.clip_directional.clip_model == "openai/clip-vit-large-patch14"
    assert cfg.metrics.clip_score.text_key == "output_caption"
    assert list(compose("model=instruct_pix2pix", "metrics=[clip_score]").metrics) == ["clip_score"]
    assert list(compose().metrics) == ["clip_score"]  # text-to-image defaults unchanged
    img2img = compose("model=sd15_img2img")
    assert (img2img.strength, img2img.image_guidance_scale, img2img.model.prompt_key) == (0.8, None, "output_caption")
    demo = compose("experiment=edit_demo")
    assert demo.model.name == "tiny_pix2pix" and demo.prompts.name == "edit_demo"
    assert len(load_prompts(demo.prompts)) == 4


def test_an_edit_input_replaced_in_place_is_another_prompt_set_in_the_summary():
    """prompts_sha256 hashed the instructions only: runs on other input images (a file replaced in place) were
    averaged as seeds of one configuration. Text-to-image records keep the same column as before."""
    import torch

    from evalrun.columns import prompts_columns
    from evalrun.hashing import stable_hash

    task = get_task("edit")
    record = {"prompt": "make it red", "input_caption": "a cube", "output_caption": "a red cube",
              "input_image": torch.zeros((3, 8, 8), dtype=torch.uint8)}
    other = {**record, "input_image": torch.full((3, 8, 8), 255, dtype=torch.uint8)}
    assert prompts_columns(task, [record]) != prompts_columns(task, [other])
    assert prompts_columns(task, [record]) != prompts_columns(task, [{**record, "output_caption": "a blue cube"}])
    assert prompts_columns(get_task("text2img"), [{"prompt": "a"}, {"prompt": "b"}]) == \
        {"prompts_sha256": stable_hash(["a", "b"], length=16)}
    # Prompt ids seed the images: ids that are positions keep the column above; moved ids (a blank line
    # added at the top of the file) or class ids (two ImageNet classes named "crane") make another set.
    text2img = get_task("text2img")
    at = [{"prompt": "a", "prompt_id": 0}, {"prompt": "b", "prompt_id": 1}]
    moved = [{"prompt": "a", "prompt_id": 1}, {"prompt": "b", "prompt_id": 2}]
    assert prompts_columns(text2img, at) == {"prompts_sha256": stable_hash(["a", "b"], length=16)}
    assert prompts_columns(text2img, moved) != prompts_columns(text2img, at)
    classes = get_task("class2img")
    assert prompts_columns(classes, [{"prompt": "crane", "prompt_id": 0, "class_id": 134}]) != \
        prompts_columns(classes, [{"prompt": "crane", "prompt_id": 0, "class_id": 517}])
    # Edits too: a row inserted above a category filter's rows moves their ids (and noise); the column stood still.
    assert prompts_columns(task, [{**record, "prompt_id": 0}]) == prompts_columns(task, [record])
    assert prompts_columns(task, [{**record, "prompt_id": 1}]) != prompts_columns(task, [record])


def test_scoring_an_edit_runs_images_folder_keeps_its_captions_and_inputs(photo_sweep, tmp_path):
    """evalrun.score on a finished edit run's images/ reads each image's captions and input from images.csv
    (it read only the prompt: clip_score scored the instruction, the edit metrics refused). The inputs are
    taken at their own size, as for any scored table: CLIPModel's own embeddings of those files."""
    from transformers import CLIPModel, CLIPProcessor

    from evalrun.score import main

    run_dir = next(photo_sweep.glob("*image_guidance_scale=1.0*seed=0*"))
    clip = [f"metrics.{m}.clip_model=evalrun/tiny-clip" for m in ("clip_score", "clip_image_similarity")]
    assert main([str(run_dir / "images"), "--metrics", "clip_score,clip_image_similarity", *clip,
                 "metrics.clip_score.text_key=output_caption", "--out", str(tmp_path / "scored")]) == 0
    scored, ran = pd.read_csv(tmp_path / "scored" / "per_image.csv"), pd.read_csv(run_dir / "per_image.csv")
    np.testing.assert_allclose(scored["clip_score"], ran["clip_score"], rtol=1e-6)
    path = tiny.resolve("evalrun/tiny-clip")
    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    with torch.no_grad():
        embeds = [model.get_image_features(**processor(images=[Image.open(f).convert("RGB")], return_tensors="pt"))
                  for pair in zip(ran["input_path"], run_dir / ran["path"]) for f in pair]
    embeds = [e.pooler_output if hasattr(e, "pooler_output") else e for e in embeds]
    expected = [F.cosine_similarity(a.double(), b.double()).item() for a, b in zip(embeds[::2], embeds[1::2])]
    np.testing.assert_allclose(scored["clip_image_similarity"], expected, atol=1e-6)

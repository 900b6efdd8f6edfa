"""pick_score, hps and image_reward as metrics of a real run (tiny pipeline, tiny twins), checked against
the same computation done directly on the saved PNGs: transformers as PickScore's README calls it,
open_clip as ``hpsv2.score`` does, and the authors' ImageReward forward re-typed in plain torch
(the references of tests/test_preference.py). Also: declarations, provenance, truncation counts,
offline errors before generation, per-category tables, validation before torch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import assert_refused_before_import, error_of, run_inprocess
from evalrun import tiny

LONG = "a very detailed oil painting of a lighthouse on a cliff above a stormy sea " * 6  # > 77 and > 35 tokens
PROMPTS = [("a red circle on a blue background", "Colors"), ("a cat sitting on a chair", "Objects"),
           (LONG.strip(), "Objects")]
METRICS = "metrics=[clip_score,pick_score,hps,image_reward,diversity]"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One run of the tiny pipeline on a DrawBench-format file (Prompts, Category), 2 images per prompt."""
    root = tmp_path_factory.mktemp("preference-run")
    pd.DataFrame({"Prompts": [p for p, _ in PROMPTS], "Category": [c for _, c in PROMPTS]}).to_csv(
        root / "drawbench.csv", index=False)
    run_dir = root / "sweep" / "run"
    run_inprocess(METRICS, "prompts=drawbench", f"prompts.path={root / 'drawbench.csv'}", "num_images_per_prompt=2",
                  run_dir=run_dir)
    return run_dir


@pytest.fixture(scope="module")
def saved(run) -> tuple[pd.DataFrame, list]:
    per_image = pd.read_csv(run / "per_image.csv")
    return per_image, [Image.open(run / p).convert("RGB") for p in per_image["path"]]


def test_pick_score_equals_transformers_on_the_pngs(saved):
    from transformers import AutoModel, AutoProcessor

    per_image, pngs = saved
    folder = Path(tiny.resolve("evalrun/tiny-pickscore"))
    processor, model = AutoProcessor.from_pretrained(folder / "processor"), AutoModel.from_pretrained(folder).eval()
    pooled = (lambda out: out if isinstance(out, torch.Tensor) else out.pooler_output)
    expected = []
    for prompt, pil in zip(per_image["prompt"], pngs):  # PickScore's README, before its softmax
        image_inputs = processor(images=[pil], return_tensors="pt")
        text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            img = pooled(model.get_image_features(**image_inputs))
            txt = pooled(model.get_text_features(**text_inputs))
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        expected.append((model.logit_scale.exp() * (txt @ img.T)[0])[0].item())
    np.testing.assert_allclose(per_image["pick_score"], expected, rtol=1e-5, atol=1e-4)
    assert np.std(expected) > 0.1  # the twin's scores differ between images: the comparison means something


def test_hps_equals_open_clip_on_the_pngs(saved):
    import open_clip
    from torchvision.transforms import Compose, Normalize, ToTensor

    from evalrun.metrics.preference import hps as hps_mod
    from test_preference import ResizeMaxSize  # HPSv2's transform, re-typed from its transform.py

    per_image, pngs = saved
    folder = Path(tiny.resolve("evalrun/tiny-hps"))
    model = open_clip.create_model(f"local-dir:{folder}", pretrained=None, load_weights=False, output_dict=True)
    model.load_state_dict(torch.load(folder / hps_mod.FILENAME, map_location="cpu", weights_only=True)["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    preprocess = Compose([ToTensor(), ResizeMaxSize(224), Normalize(hps_mod.OPENAI_MEAN, hps_mod.OPENAI_STD)])
    expected = []
    for prompt, pil in zip(per_image["prompt"], pngs):
        with torch.no_grad():
            out = model(preprocess(pil).unsqueeze(0), tokenizer([prompt]))
        expected.append(torch.diagonal(out["image_features"] @ out["text_features"].T)[0].item())
    np.testing.assert_allclose(per_image["hps"], expected, rtol=1e-5, atol=1e-6)
    assert np.std(expected) > 1e-3


def test_image_reward_equals_the_authors_forward_on_the_pngs(saved):
    from test_preference import _authors_image_reward

    per_image, pngs = saved
    folder = Path(tiny.resolve("evalrun/tiny-image-reward"))
    med = json.loads((folder / "med_config.json").read_text())
    expected = _authors_image_reward(folder / "ImageReward.pt", med, folder / "tokenizer", pngs,
                                     list(per_image["prompt"]), vit_heads=2)
    np.testing.assert_allclose(per_image["image_reward"], expected, rtol=1e-5, atol=1e-5)
    assert np.std(expected) > 1e-3


def test_declared_recorded_and_truncation_counted(run, saved):
    import open_clip
    from transformers import BertTokenizer, CLIPTokenizer

    per_image, _ = saved
    record = json.loads((run / "run.json").read_text())
    metrics = pd.read_csv(run / "metrics.csv").iloc[0]
    info = record["provenance"]["metrics"]
    folders = {m: Path(tiny.resolve(f"evalrun/tiny-{t}")) for m, t in
               (("pick_score", "pickscore"), ("hps", "hps"), ("image_reward", "image-reward"))}
    weights = {"pick_score": "model.safetensors", "hps": "HPS_v2.1_compressed.pt", "image_reward": "ImageReward.pt"}
    texts = sorted(set(per_image["prompt"]))
    truncated = {  # each scorer's own tokenizer, without truncation, against its context
        "pick_score": sum(len(ids) > 77 for ids in CLIPTokenizer.from_pretrained(
            folders["pick_score"] / "processor")(texts)["input_ids"]),
        "hps": sum(len(open_clip.get_tokenizer(f"local-dir:{folders['hps']}").encode(t)) + 2 > 77 for t in texts),
        "image_reward": sum(len(ids) > 35 for ids in BertTokenizer.from_pretrained(
            folders["image_reward"] / "tokenizer")(texts)["input_ids"]),
    }
    for name, folder in folders.items():
        declared = record["columns"][name]
        assert (declared["direction"], declared["kind"], declared["per_image"]) == ("higher", "score", True)
        assert record["higher_is_better"][name] is True
        assert metrics[name] == pytest.approx(per_image[name].mean(), rel=1e-12)
        sha = hashlib.sha256((folder / weights[name]).read_bytes()).hexdigest()
        assert info[name]["weights_sha256"][weights[name]] == sha
        assert metrics[f"{name}.weights_sha256"] == sha[:16] and metrics[f"{name}.text_key"] == "prompt"
        assert info[name]["preprocessing"] and info[name]["text_max_length"] in (77, 35)
        assert info[name][f"{name}_truncated_texts"] == truncated[name] >= 1, name
        assert info[name][f"{name}_n"] == len(per_image) == 6
    # settings name what was configured, not the cache folder the tiny twin was built in
    assert metrics["pick_score.model"] == "evalrun/tiny-pickscore"
    assert metrics["pick_score.processor"] == "evalrun/tiny-pickscore/processor"
    assert metrics["image_reward.tokenizer"] == "evalrun/tiny-image-reward/tokenizer"
    assert (run / "images").is_dir() and record["provenance"]["smoke_model_random_weights"] is True


def test_per_category_tables_cover_every_per_image_metric(run, saved):
    """report/tables.py's breakdown handles any declared per-image score and DrawBench's Category."""
    from evalrun.report import build_report

    per_image, _ = saved
    build_report([run.parent], plots=False, gallery=False)
    for metric in ("clip_score", "pick_score", "hps", "image_reward"):
        table = pd.read_csv(run.parent / "report" / "tables" / f"{metric}_by_category.csv")
        expected = per_image.groupby("category")[metric].mean()
        got = table.set_index("category")["mean"]
        np.testing.assert_allclose(got.loc[expected.index], expected, rtol=1e-9)
    assert not (run.parent / "report" / "tables" / "pick_score_by_challenge.csv").exists()  # DrawBench has none
    assert not (run.parent / "report" / "tables" / "diversity_vendi_by_category.csv").exists()  # not per image


def test_scorers_load_once_per_process(run):
    from evalrun.metrics.base import MetricContext
    from evalrun.metrics.preference_score import PickScoreMetric

    a = PickScoreMetric(MetricContext(), model="evalrun/tiny-pickscore", batch_size=2)
    b = PickScoreMetric(MetricContext(), model="evalrun/tiny-pickscore", batch_size=7)
    a.load()
    b.load()
    assert a.scorer is b.scorer  # the run above loaded it too: the same object


@pytest.mark.parametrize("override, names", [
    ("metrics.pick_score.model=yuvalkirstain/PickScore_v1", ["yuvalkirstain/PickScore_v1", "metrics.pick_score.model=DIR"]),
    ("metrics.hps.checkpoint=xswu/HPSv2", ["HPS_v2.1_compressed.pt", "metrics.hps.checkpoint=DIR"]),
    ("metrics.image_reward.checkpoint=THUDM/ImageReward", ["ImageReward.pt", "metrics.image_reward.checkpoint=DIR"]),
])
def test_missing_weights_offline_fail_before_generation(tmp_path, override, names):
    metric = override.split(".")[1]
    message = error_of(f"metrics=[{metric}]", override, "prompts.limit=1", run_dir=tmp_path / "run")
    assert all(n in message for n in names) and "hf download" in message, message
    assert not (tmp_path / "run" / "images").exists() or not any((tmp_path / "run" / "images").iterdir())


def test_a_mistyped_local_folder_is_no_such_folder_not_a_hub_id(tmp_path):
    message = error_of("metrics=[pick_score]", f"metrics.pick_score.model={tmp_path / 'nope' / 'ps'}",
                       "prompts.limit=1", run_dir=tmp_path / "run")
    assert message.startswith(f"metrics.pick_score.model={tmp_path / 'nope' / 'ps'}: no such folder"), message
    assert "hf download" not in message


def test_bad_settings_are_answered_before_torch_is_imported():
    assert_refused_before_import(
        [(bad,) for bad in ("metrics.pick_score.batch_size=0", "metrics.hps.dtype=float8", "metrics.image_reward.checkpoint=",
                            "metrics.diversity.q=0", "metrics.diversity.feature_extractor=nope",
                            "metrics.diversity.feature_extractor_options={bogus: 1}")],
        common=("metrics=[pick_score,hps,image_reward,diversity]",),
        heavy=("torch", "diffusers", "transformers", "open_clip"), message_names_metric=True)

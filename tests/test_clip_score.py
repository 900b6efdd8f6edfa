"""CLIP score against an independent computation with transformers' CLIPModel on the saved PNGs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import run_inprocess
from evalrun import tiny
from evalrun.metrics.features import build_extractor
from evalrun.metrics.functional.clip import clip_score


def test_run_clip_score_equals_clipmodel_forward(tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    run_dir = tmp_path / "run"
    run_inprocess("prompts.limit=4", "num_images_per_prompt=2", run_dir=run_dir)
    per_image = pd.read_csv(run_dir / "per_image.csv")
    path = tiny.resolve("evalrun/tiny-clip")
    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    images = [np.asarray(Image.open(run_dir / p).convert("RGB")) for p in per_image["path"]]
    inputs = processor(text=list(per_image["prompt"]), images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)  # image_embeds / text_embeds are L2-normalised by CLIPModel itself
    cos = (out.image_embeds.double() * out.text_embeds.double()).sum(-1)
    expected = (100 * cos.clamp_min(0)).numpy()
    np.testing.assert_allclose(per_image["clip_score"].to_numpy(), expected, rtol=1e-5, atol=1e-4)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["clip_score"].iloc[0] == pytest.approx(expected.mean(), rel=1e-5)


def test_clip_score_clamps_each_image_not_the_mean():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # cos = 1 and -1
    scores = clip_score(image, text)
    assert scores.tolist() == [100.0, 0.0]  # torchmetrics would average (1 + -1) first and report 0
    assert clip_score(image, text, scale=2.5).tolist() == [2.5, 0.0]


def test_long_prompts_keep_end_token_and_are_counted():
    bundle = build_extractor("clip", path="evalrun/tiny-clip")
    long = "a very long prompt " * 20  # far beyond 77 character tokens
    assert bundle.count_truncated(["short", long]) == [False, True]
    tok = bundle.processor.tokenizer([long], truncation=True, max_length=bundle.max_length)["input_ids"][0]
    assert len(tok) == 77 and tok[-1] == bundle.processor.tokenizer.eos_token_id
    # The truncated prompt embeds exactly like its first 75 content tokens followed by the end token.
    ids = torch.tensor([tok])
    with torch.no_grad():
        direct = bundle.model.text_projection(bundle.model.text_model(input_ids=ids).pooler_output)
    torch.testing.assert_close(bundle.encode_texts([long]), direct)

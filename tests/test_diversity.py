"""diversity (in a run) and python -m evalrun.diversity (across seeds) against direct computations:
invariants on embeddings built to be identical or orthogonal (a registered test extractor), and
Vendi scores of CLIP embeddings of the saved PNGs from numpy's eigenvalues."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import run_inprocess
from evalrun import tiny
from evalrun.errors import ConfigError, EvalrunError
from evalrun.metrics.base import ImageBatch, MetricContext
from evalrun.metrics.features.base import FeatureExtractor


class OneHot(FeatureExtractor):
    """Test backbone: an image's embedding is the one-hot vector of its first pixel's red value mod 8."""

    name = "onehot"

    @property
    def layers(self) -> dict[str, int]:
        return {"embedding": 8}

    def preprocessing(self):
        return {"input": "uint8", "embedding": "one-hot of pixel[0, 0, 0] % 8"}

    def weights_identity(self):
        return {"sha256": "0" * 64}

    def _extract(self, images):
        return {"embedding": torch.nn.functional.one_hot(images[:, 0, 0, 0].long() % 8, 8).float()}


def vendi_direct(x: np.ndarray) -> float:
    """Friedman & Dieng: exp of the Shannon entropy of the eigenvalues of K / n, K the cosine kernel."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(u @ u.T / len(u))
    lam = lam[lam > 1e-15]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def pairwise_direct(x: np.ndarray) -> float:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return float(np.mean([1 - u[i] @ u[j] for i, j in itertools.combinations(range(len(u)), 2)]))


def batch(codes: list[int], groups: list, start: int = 0) -> ImageBatch:
    images = torch.zeros(len(codes), 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor(codes, dtype=torch.uint8)
    images[:, 1] = torch.arange(len(codes), dtype=torch.uint8)[:, None, None] + start  # distinct pixels
    records = [{"prompt_id": g, "prompt": f"p{g}", "category": "odd" if g % 2 else "even", "challenge": None}
               for g in groups]
    return ImageBatch(images, records, start=start)


@pytest.fixture
def onehot(monkeypatch):
    from evalrun.metrics import features

    monkeypatch.setitem(features.EXTRACTORS, "onehot", "test_diversity:OneHot")


def test_identical_orthogonal_and_clustered_images(onehot):
    from evalrun.metrics.diversity import Diversity

    metric = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding", batch_size=4)
    # prompt 0: 4 identical embeddings; 1: 4 orthogonal; 2: two pairs; 3: one image (no pairs);
    # spread over two chunks, as a run's images arrive
    metric.update(batch([5, 5, 5, 1, 2, 3, 4], [0, 0, 0, 1, 1, 1, 1]))
    metric.update(batch([5, 6, 6, 7, 7, 0], [0, 2, 2, 2, 2, 3], start=7))
    result = metric.compute()
    per = {g["prompt_id"]: g for g in result.info["per_group"]}
    assert per[0]["vendi"] == pytest.approx(1.0, abs=1e-12) and per[0]["pairwise_cosine"] == pytest.approx(0, abs=1e-12)
    assert per[1]["vendi"] == pytest.approx(4.0, abs=1e-12) and per[1]["pairwise_cosine"] == pytest.approx(1.0)
    assert per[2]["vendi"] == pytest.approx(2.0, abs=1e-12) and per[2]["pairwise_cosine"] == pytest.approx(4 / 6)
    assert per[3]["n_images"] == 1 and per[3]["vendi"] is None  # NaN in run.json as null
    assert result.values == pytest.approx({"diversity_vendi": 7 / 3, "diversity_pairwise_cosine": (0 + 1 + 4 / 6) / 3,
                                           "diversity_groups": 3})
    assert per[1]["prompt"] == "p1" and per[1]["category"] == "odd"
    assert result.per_image == {}  # a per-prompt metric has no per-image column
    assert metric.settings()["feature_extractor"] == "onehot" and "clip_model" not in metric.settings()


def test_group_by_a_field_or_all_and_missing_fields(onehot):
    from evalrun.metrics.diversity import Diversity

    by_category = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding", group_by="category")
    by_category.update(batch([1, 2, 3, 3], [0, 1, 2, 3]))  # even: codes 1, 3; odd: 2, 3
    assert by_category.compute().values["diversity_vendi"] == pytest.approx(2.0)
    everything = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding", group_by="all")
    everything.update(batch([1, 2, 3, 3], [0, 1, 2, 3]))
    x = np.eye(8)[[1, 2, 3, 3]]
    assert everything.compute().values["diversity_vendi"] == pytest.approx(vendi_direct(x), rel=1e-12)
    lonely = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding")
    lonely.update(batch([1, 2], [0, 1]))
    result = lonely.compute()
    assert np.isnan(result.values["diversity_vendi"]) and result.values["diversity_groups"] == 0
    assert "python -m evalrun.diversity" in result.info["diversity_warning"]
    missing = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding", group_by="class_id")
    with pytest.raises(EvalrunError, match=r"group_by='class_id': image 0 has no class_id .*\(prompt_id, prompt, "
                                           r"category, all\)"):
        missing.update(batch([1], [0]))
    with pytest.raises(ConfigError, match="group_by='promptid' is not a field.*valid: prompt_id, prompt"):
        Diversity(MetricContext(), feature_extractor="onehot", layer="embedding", group_by="promptid")


def test_images_added_in_memory_are_grouped_by_their_prompt(onehot):
    """Metric.add numbers images as a run does: one prompt id per distinct prompt over every call, or the ids
    given; without prompts each image is its own."""
    from evalrun.metrics.diversity import Diversity

    def images(codes):
        x = np.zeros((len(codes), 4, 4, 3), np.uint8)
        x[:, 0, 0, 0] = codes
        return x

    prompts = ["a red cube"] * 4 + ["a blue ball"] * 4
    codes = [1, 1, 2, 2, 3, 4, 5, 6]  # cube: two pairs (Vendi 2); ball: four orthogonal (Vendi 4)
    for calls in ([slice(0, 8)], [slice(0, 4), slice(4, 8)], [slice(0, 3), slice(3, 5), slice(5, 8)]):
        metric = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding")
        for part in calls:
            metric.add(images(codes[part]), prompts=prompts[part])
        result = metric.compute()
        assert result.values["diversity_vendi"] == pytest.approx(3.0, abs=1e-12), calls
        assert {g["prompt"]: g["n_images"] for g in result.info["per_group"]} == {"a red cube": 4, "a blue ball": 4}
    given = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding")
    given.add(images(codes), prompt_id=[0] * 4 + [1] * 4)
    assert given.compute().values["diversity_vendi"] == pytest.approx(3.0, abs=1e-12)
    alone = Diversity(MetricContext(), feature_extractor="onehot", layer="embedding")
    alone.add(images(codes[:4]))
    alone.add(images(codes[4:]))
    assert alone.compute().values["diversity_groups"] == 0  # not image i of each call pooled


# ----------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Config A (guidance 7.5): seeds 0 and 1; config B (guidance 1): seed 0; 2 prompts x 2 images each."""
    root = tmp_path_factory.mktemp("diversity-sweep")
    for gs, seed in ((7.5, 0), (7.5, 1), (1.0, 0)):
        run_inprocess("metrics=[clip_score,diversity]", "prompts.limit=2", "num_images_per_prompt=2", "steps=2",
                      f"guidance_scale={gs}", f"seed={seed}", run_dir=root / f"gs{gs}_seed{seed}")
    return root


def clip_embeddings(paths: list[Path]) -> np.ndarray:
    """transformers' CLIPModel forward on the PNGs (image_embeds, L2-normalised by CLIPModel)."""
    from transformers import CLIPModel, CLIPProcessor

    path = tiny.resolve("evalrun/tiny-clip")
    model, processor = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    inputs = processor(text=["x"] * len(images), images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs).image_embeds.double().numpy()


def test_in_run_diversity_equals_numpy_on_clip_embeddings_of_the_pngs(sweep):
    run = sweep / "gs7.5_seed0"
    record = json.loads((run / "run.json").read_text())
    per_image = pd.read_csv(run / "per_image.csv")
    emb = clip_embeddings([run / p for p in per_image["path"]])
    groups = {g["prompt_id"]: g for g in record["provenance"]["metrics"]["diversity"]["per_group"]}
    for prompt_id, rows in per_image.groupby("prompt_id"):
        x = emb[rows.index]
        assert groups[prompt_id]["vendi"] == pytest.approx(vendi_direct(x), rel=1e-5)
        assert groups[prompt_id]["pairwise_cosine"] == pytest.approx(pairwise_direct(x), rel=1e-4, abs=1e-7)
    values = record["values"]
    assert values["diversity_vendi"] == pytest.approx(np.mean([g["vendi"] for g in groups.values()]), rel=1e-12)
    assert values["diversity_groups"] == 2
    assert record["columns"]["diversity_vendi"]["direction"] is None  # more diverse is not better in every study
    assert "diversity_vendi" not in record["higher_is_better"]
    assert not record["columns"]["diversity_vendi"]["per_image"]
    # clip_score and diversity share the CLIP extractor: each image embedded once
    features = record["provenance"]["features"]
    assert features["extracted"] + features["reused"] == len(per_image) == 4


def test_reports_say_higher_or_lower_for_diversity_never_better(sweep, tmp_path):
    """Diversity has no direction: no arrow or best cell in its tables, no cost-quality front, and its
    comparison says which is higher, where clip_score's says which is better."""
    from evalrun.report import build_report

    build_report([sweep], tmp_path / "report", plots=False, gallery=False, compare=[["guidance_scale=7.5",
                                                                                      "guidance_scale=1.0"]])
    report = (tmp_path / "report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| Guidance |"))
    assert "CLIP score ↑" in header and "| Vendi score per prompt |" in header  # no arrow
    vendi_rows = [line for line in report.splitlines() if line.startswith("| Vendi score per prompt |")]
    assert len(vendi_rows) == 1 and "better" not in vendi_rows[0]
    assert "### CLIP score vs NFE" in report and "### Vendi" not in report
    pareto = pd.read_csv(tmp_path / "report" / "pareto.csv")
    assert set(pareto["quality"]) == {"clip_score"}


def test_across_seeds_pools_images_per_configuration(sweep):
    from evalrun.diversity import main

    assert main([str(sweep)]) == 0
    table = pd.read_csv(sweep / "diversity.csv").set_index("guidance_scale")
    info = json.loads((sweep / "diversity.json").read_text())
    assert info["features"] == {"extracted": 0, "reused": 12}  # the runs' cached CLIP features, no PNG embedded
    assert table.loc[7.5, "n_runs"] == 2 and table.loc[7.5, "seeds"] == "0 1"
    assert str(table.loc[7.5, "images_per_group"]) == "4" and str(table.loc[1.0, "images_per_group"]) == "2"
    assert table.loc[7.5, "across_seeds.clip_model"] == "evalrun/tiny-clip"  # taken from the runs' clip_score
    per_prompt = pd.read_csv(sweep / "diversity_per_prompt.csv")
    assert len(per_prompt) == 4
    for gs, runs in ((7.5, ["gs7.5_seed0", "gs7.5_seed1"]), (1.0, ["gs1.0_seed0"])):
        frames = [pd.read_csv(sweep / r / "per_image.csv").assign(run=r) for r in runs]
        images = pd.concat(frames, ignore_index=True)
        emb = clip_embeddings([sweep / r / p for r, p in zip(images["run"], images["path"])])
        vendi = [vendi_direct(emb[rows.index]) for _, rows in images.groupby("prompt_id")]
        pairwise = [pairwise_direct(emb[rows.index]) for _, rows in images.groupby("prompt_id")]
        assert table.loc[gs, "diversity_vendi"] == pytest.approx(np.mean(vendi), rel=1e-5)
        assert table.loc[gs, "diversity_pairwise_cosine"] == pytest.approx(np.mean(pairwise), rel=1e-4, abs=1e-7)
        assert table.loc[gs, "n_groups"] == 2


def test_across_seeds_mistakes_are_one_line_naming_the_option(sweep, tmp_path, capsys):
    """A field the prompts lack is refused (never one group of unknowns), as by the in-run metric; a bad
    device or order names this command's option, not the config key."""
    from evalrun.diversity import main

    for args, message in ((["--group-by", "category"], "--group-by category: image 00000_00 of .* has no category; "
                                                        "group by a field it has (prompt_id, prompt, seed, all)"),
                          (["--device", "foo"], "--device foo is not a torch device; use auto, cpu, cuda or cuda:N"),
                          (["--q", "0"], "--q must be a number > 0")):
        assert main([str(sweep), *args, "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("evalrun.diversity: error: ") and re.search(message.replace(
            "(", r"\(").replace(")", r"\)"), err), err
    assert not (tmp_path / "diversity.csv").exists()


def test_across_seeds_reads_and_verifies_pngs_when_features_are_not_cached(sweep, tmp_path):
    from evalrun.diversity import sweep_diversity

    cached, _, _ = sweep_diversity([sweep], batch_size=64)
    fresh, _, info = sweep_diversity([sweep], batch_size=5)  # another extractor key: a cache miss
    assert info["features"]["extracted"] == 12
    np.testing.assert_allclose(fresh["diversity_vendi"], cached["diversity_vendi"], rtol=1e-5)
    png = sweep / "gs1.0_seed0" / "images" / "00001_01.png"
    image = np.asarray(Image.open(png).convert("RGB")).copy()
    image[0, 0] ^= 1
    png.unlink()  # run images may be hard links into the image store: never write through them
    Image.fromarray(image).save(png)
    with pytest.raises(EvalrunError, match="00001_01.png.*do not match the hash"):
        sweep_diversity([sweep], batch_size=3)

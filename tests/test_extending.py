"""README's "Extending evalrun": a task and a backbone of one's own, each one module plus one yaml
(examples/extending/), run through the real CLI with no edit to evalrun's registries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, cli

EXAMPLES = REPO / "examples" / "extending"
SEARCHPATH = f"hydra.searchpath=[file://{EXAMPLES / 'conf'}]"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_a_task_of_ones_own_is_one_module_and_one_model_yaml(tmp_path):
    """Inpainting (inpaint_task.py + conf/model/tiny_inpaint.yaml): runs, records its knobs and its own
    column, masks a centre square, and a different mask never reuses the images of another."""
    from inpaint_task import Inpaint

    runs = {}
    for fraction in (0.5, 0.25):
        run_dir = tmp_path / f"mask{fraction}"
        cli(SEARCHPATH, "model=tiny_inpaint", "prompts=edit_demo", "prompts.limit=2", f"model.mask_fraction={fraction}",
            "metrics=[clip_score,clip_image_similarity]", f"hydra.run.dir={run_dir}")
        row = pd.read_csv(run_dir / "metrics.csv").iloc[0]
        assert -1 <= row["clip_image_similarity"] <= 1  # the task provides its input images to edit metrics
        assert row["task"] == "inpaint" and row["pipeline"] == "StableDiffusionInpaintPipeline"
        assert row["mask_fraction"] == fraction and row["strength"] == 1.0 and row["n_images"] == 2
        assert np.isfinite(row["clip_score"]) and row["clip_score.text_key"] == "output_caption"
        runs[fraction] = [np.asarray(Image.open(p)) for p in sorted((run_dir / "images").glob("*.png"))]
    assert len(runs[0.5]) == 2 and all(not np.array_equal(a, b) for a, b in zip(runs[0.5], runs[0.25]))

    from conftest import compose

    cfg = compose(SEARCHPATH, "model=tiny_inpaint", "prompts=edit_demo", "prompts.limit=1")
    task = Inpaint()
    records = task.prepare(None, task.load_records(cfg), cfg)
    mask = records[0]["mask_image"].numpy()
    assert mask.sum() == 255 * 16 * 16 and mask[8:24, 8:24].all()  # half of each side of 32 x 32, centred

    bad = cli(SEARCHPATH, "model=tiny_inpaint", "prompts=edit_demo", "model.mask_fraction=2",
              f"hydra.run.dir={tmp_path / 'bad'}", check=False)
    assert bad.returncode != 0 and bad.stderr.strip() == \
        "evalrun: error: model.mask_fraction must be a number in (0, 1], got 2"
    missing = cli(SEARCHPATH, "model=tiny_inpaint", "prompts=edit_demo", "model.task=no_such_pkg.tasks:Inpaint",
                  f"hydra.run.dir={tmp_path / 'missing'}", check=False)
    assert missing.returncode != 0 and "no module 'no_such_pkg.tasks' on the Python path" in missing.stderr


def _frechet_float64(gen: np.ndarray, ref: np.ndarray) -> float:
    """FD with tr sqrt(S1 S2) as the nuclear norm of A^T B (S1 = A A^T, S2 = B B^T): float64 SVD."""
    gen, ref = gen.astype(np.float64), ref.astype(np.float64)
    a = (gen - gen.mean(0)).T / np.sqrt(len(gen) - 1)
    b = (ref - ref.mean(0)).T / np.sqrt(len(ref) - 1)
    trace_sqrt = np.linalg.svd(a.T @ b, compute_uv=False).sum()
    diff = gen.mean(0) - ref.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * trace_sqrt)


def test_a_backbone_of_ones_own_is_one_module_and_one_yaml(tmp_path):
    """FD on ResNet-50 features (swav_backbone.py + conf/experiment/fd_swav.yaml) equals the Frechet
    distance of features computed here directly from the weights file, on the same PNGs."""
    import torch
    import torch.nn.functional as F
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None)
    weights = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    reference = tmp_path / "reference"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(reference / f"{i}.png")

    run_dir = tmp_path / "run"
    cli(SEARCHPATH, "experiment=fd_swav", "model=tiny_ddpm", "num_images=6", "metrics=[fd]", "reference=folder",
        f"reference.path={reference}", f"metrics.fd.feature_extractor_path={weights}", f"hydra.run.dir={run_dir}")
    row = pd.read_csv(run_dir / "metrics.csv").iloc[0]
    assert row["fd.feature_extractor"] == "swav_backbone:ResNet50Features"

    net.fc = torch.nn.Identity()
    net.eval()

    def features(folder):
        images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
        assert images.shape[1:] == (32, 32, 3)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True).clamp(0, 1)
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.no_grad():
            return net(x).numpy()

    expected = _frechet_float64(features(run_dir / "images"), features(reference))
    assert row["fd"] == pytest.approx(expected, rel=1e-5)

    import json

    info = json.loads((run_dir / "run.json").read_text())["provenance"]["metrics"]["fd"]
    assert info["feature_extractor_weights"]["sha256"] == __import__("hashlib").sha256(weights.read_bytes()).hexdigest()


def test_a_plugin_that_fails_to_import_or_build_is_one_line(tmp_path, monkeypatch):
    """Your own task or backbone whose module raises on import, whose constructor raises, or that leaves
    abstract methods unimplemented: one line naming the key (they gave tracebacks)."""
    from evalrun.errors import EvalrunError
    from evalrun.metrics.features import build_extractor
    from evalrun.tasks import get_task

    (tmp_path / "failing_plugins.py").write_text(
        "from evalrun.tasks.text2img import TextToImage\n"
        "from evalrun.metrics.features.base import FeatureExtractor\n\n"
        "class Boom(TextToImage):\n    def __init__(self):\n        raise RuntimeError('constructor exploded')\n\n"
        "class Abstract(FeatureExtractor):\n    pass\n")
    (tmp_path / "failing_import.py").write_text("raise ImportError('no such thing here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EvalrunError, match=r"^model.task='failing_plugins:Boom': building it failed \(RuntimeError: "
                                           r"constructor exploded\)$"):
        get_task("failing_plugins:Boom")
    with pytest.raises(EvalrunError, match=r"^model.task='failing_import:X': importing failing_import failed "
                                           r"\(ImportError: no such thing here\)$"):
        get_task("failing_import:X")
    with pytest.raises(EvalrunError, match=r"leaves _extract, layers, preprocessing, weights_identity unimplemented"):
        build_extractor("failing_plugins:Abstract")


TASK_IMPL = '''from evalrun.tasks.text2img import TextToImage


class MyTask(TextToImage):
    name = "my_task"  # {version}
'''
EXTRACTOR = '''from evalrun.metrics.features.base import FeatureExtractor


class MyFeatures(FeatureExtractor):
    name = "my_features"
    layers = {{"embedding": 3}}

    def preprocessing(self):
        return {{}}

    def weights_identity(self):
        return {{"version": {version}}}

    def _extract(self, images):
        return {{"embedding": images.float().mean(dim=(2, 3))}}
'''


def test_editing_your_own_task_or_backbone_is_new_results(tmp_path, monkeypatch):
    """The code of a task or backbone of your own is part of the run key, of each image's key (a task builds
    the pipeline's inputs) and of the feature cache's key: the file that defines the class, also when it
    lives in a package's submodule (the package's __init__ did not change)."""
    import importlib
    import sys

    from conftest import compose
    from evalrun.hashing import file_sha256
    from evalrun.keys import generation_key, input_identities
    from evalrun.metrics.features import build_extractor, clear_cache

    package = tmp_path / "my_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("from .impl import MyTask\nfrom .features import MyFeatures\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = []
    for version in (1, 2):
        (package / "impl.py").write_text(TASK_IMPL.format(version=version))
        (package / "features.py").write_text(EXTRACTOR.format(version=1))  # its weights identity stays the same
        for name in [m for m in sys.modules if m.startswith("my_plugins")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        clear_cache()
        cfg = compose("model.task=my_plugins:MyTask")
        identities = input_identities(cfg)
        assert identities["model.task"] == file_sha256(package / "impl.py")
        features = build_extractor("my_plugins:MyFeatures").identity()
        assert features["source_sha256"] == file_sha256(package / "features.py")
        found.append((identities["model.task"], generation_key(cfg, {}, {}, {"class": "X"}, "float32", "cpu")))
        (package / "features.py").write_text(EXTRACTOR.format(version=1) + "# edited\n")
        for name in [m for m in sys.modules if m.startswith("my_plugins")]:
            del sys.modules[name]
        clear_cache()
        assert build_extractor("my_plugins:MyFeatures").identity()["source_sha256"] != features["source_sha256"]
    assert found[0][0] != found[1][0] and found[0][1] != found[1][1]


METRIC = '''from evalrun.metrics.base import Metric, MetricResult, Output


class Bright(Metric):
    name = "bright"
    outputs = (Output("brightness", "lower", fmt=".2f", label="Brightness"),)

    def update(self, batch):
        self.__dict__.setdefault("seen", []).append(float(batch.images.float().mean()))

    def compute(self):
        return MetricResult(values=RETURNED, info={})
'''


@pytest.fixture
def own_metric(tmp_path, monkeypatch):
    """A metric class of one's own, outside evalrun, registered under ``bright``; returns a writer of its code."""
    import sys

    from evalrun.metrics import registry

    package = tmp_path / "own"
    package.mkdir()
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setitem(registry.METRICS, "bright", "own_metric:Bright")

    def write(returned: str) -> None:
        (package / "own_metric.py").write_text(METRIC.replace("RETURNED", returned))
        sys.modules.pop("own_metric", None)  # as a new process would import it

    return write


def _run_with(metric: str, run_dir):
    import evalrun
    from omegaconf import open_dict

    cfg = evalrun.compose(["model=tiny_ddpm", "num_images=2", "steps=2", "metrics=[]"])
    with open_dict(cfg):
        cfg.metrics = {metric: {}}
    return evalrun.evaluate(config=cfg, run_dir=run_dir)


def test_a_metric_of_ones_own_edited_in_place_is_computed_again(own_metric, tmp_path):
    own_metric('{"brightness": 3 * sum(self.seen) / len(self.seen)}')
    first = _run_with("bright", tmp_path / "run").values["brightness"]
    own_metric('{"brightness": sum(self.seen) / len(self.seen)}')
    again = _run_with("bright", tmp_path / "run").values["brightness"]  # was served from the finished run
    assert again == pytest.approx(first / 3, rel=1e-9)


def test_a_metric_of_ones_own_that_returns_an_undeclared_column_is_one_line(own_metric, tmp_path):
    from evalrun.errors import EvalrunError

    own_metric('{"brightness": 1.0, "surprise": 2.0}')
    with pytest.raises(EvalrunError, match=r"^metric 'bright' \(own_metric.Bright\) returned column\(s\) surprise that "
                                           r"its outputs do not declare; add an Output for each to Bright.outputs"):
        _run_with("bright", tmp_path / "run")


def test_a_registry_entry_that_cannot_be_imported_or_is_abstract_is_one_line(own_metric, monkeypatch):
    import importlib
    import sys
    from pathlib import Path

    from evalrun.errors import ConfigError
    from evalrun.metrics import registry

    monkeypatch.setitem(registry.METRICS, "nowhere", "no_such_module:X")
    with pytest.raises(ConfigError, match=r"^metric 'nowhere' is registered as 'no_such_module:X', which cannot be "
                                          r"imported \(No module named 'no_such_module'\); fix the entry"):
        registry.metric_class("nowhere")
    own_metric("{}")
    source = Path(importlib.import_module("own_metric").__file__)
    source.write_text(source.read_text().split("    def compute")[0])  # a metric without compute
    sys.modules.pop("own_metric")
    with pytest.raises(ConfigError, match=r"^metric 'bright' \(own_metric:Bright\) does not implement compute"):
        registry.metric_class("bright")


BAD_EXTRACTOR = '''import numpy as np
import torch

from evalrun.metrics.features.base import FeatureExtractor


class Bad(FeatureExtractor):
    name = "bad"
    layers = {"embedding": 8}

    def __init__(self, device="cpu", batch_size=50, answer="shape"):  # no key=: evalrun's own option
        super().__init__(device, batch_size)
        self.answer = answer

    def preprocessing(self):
        return {}

    def weights_identity(self):
        return {}

    def _extract(self, images):
        n = len(images)
        return {"shape": {"embedding": torch.zeros(n, 5)}, "layer": {"pool": torch.zeros(n, 8)},
                "rows": {"embedding": torch.zeros(1, 8)}, "list": {"embedding": [[0.0] * 8] * n},
                "numpy": {"embedding": np.ones((n, 8))}}[self.answer]
'''


@pytest.mark.parametrize("answer, got", [
    ("shape", r"'embedding' of shape \(3, 5\)"),  # blamed the reference's statistics, and was cached
    ("layer", r"no 'embedding' \(keys: pool\)"),  # a KeyError traceback
    ("rows", r"'embedding' of shape \(1, 8\)"),   # "fd needs at least 2 generated images, got 1"
    ("list", r"'embedding' as a list"),
])
def test_a_backbone_of_ones_own_answering_otherwise_is_one_line_naming_it(tmp_path, monkeypatch, answer, got):
    import sys

    import torch

    from evalrun.errors import EvalrunError
    from evalrun.metrics.features import build_extractor, clear_cache

    (tmp_path / "bad_backbone.py").write_text(BAD_EXTRACTOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_backbone", raising=False)  # this test's file, not one imported before
    clear_cache()
    extractor = build_extractor("bad_backbone:Bad", answer=answer, key="metrics.fd.feature_extractor_path")
    with pytest.raises(EvalrunError, match=rf"^feature extractor bad \(bad_backbone.Bad\) returned {got} for 3 images; "
                                           r"its _extract must return \{layer: float tensor \(n, D\)\} for every layer "
                                           r"it declares \(embedding: 8\)$"):
        extractor.extract(torch.zeros((3, 3, 8, 8), dtype=torch.uint8))
    numpy = build_extractor("bad_backbone:Bad", answer="numpy", key="metrics.fd.feature_extractor_path")
    assert numpy.extract(torch.zeros((3, 3, 8, 8), dtype=torch.uint8))["embedding"].dtype == "float32"


def test_a_backbone_whose_constructor_raises_names_the_key_that_chose_it(tmp_path, monkeypatch):
    """It named metrics.fd.feature_extractor_path (the weights key evalrun passes as key=) for the class."""
    import sys

    from evalrun.errors import EvalrunError
    from evalrun.metrics.features import build_extractor, clear_cache

    (tmp_path / "bad_backbone.py").write_text(BAD_EXTRACTOR.replace("        self.answer = answer",
                                                                    "        raise RuntimeError('no weights')"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_backbone", raising=False)  # this test's file, not one imported before
    clear_cache()
    with pytest.raises(EvalrunError, match=r"^metrics.fd.feature_extractor='bad_backbone:Bad': building it failed "
                                           r"\(RuntimeError: no weights\)$"):
        build_extractor("bad_backbone:Bad", key="metrics.fd.feature_extractor_path")

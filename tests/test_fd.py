"""FD on every backbone equals the float64 Frechet distance of features extracted directly (the
libraries' own models called by hand, the user's TorchScript module called directly), FD of a
set against itself is 0, FD_DINOv2 uses the hub's position-embedding resize, and a user's
backbone is identified by content. Offline: random weights of the real architectures."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import inception_weights as iw  # noqa: E402
from dist_helpers import INCEPTION, TinyEncoder, frechet64, inception_file, run_metric, save_pngs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 12
N_INCEPTION = 4   # Inception costs ~0.3 s an image on one CPU thread: fewer images for it


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fd")
    gen, ref = iw.random_images(N, 32, seed=1), iw.random_images(N, 32, seed=2)
    script = torch.jit.script(TinyEncoder(8).eval())
    script.save(str(tmp / "encoder.ts"))
    return {"gen": gen, "ref": ref, "ref_dir": save_pngs(ref, tmp / "ref"), "gen_dir": save_pngs(gen, tmp / "gen"),
            "cache": tmp / "cache", "tmp": tmp, "ts": tmp / "encoder.ts", "module": TinyEncoder(8).eval(),
            "small": {"gen": gen[:N_INCEPTION], "ref": ref[:N_INCEPTION],
                      "ref_dir": save_pngs(ref[:N_INCEPTION], tmp / "ref_small"),
                      "gen_dir": save_pngs(gen[:N_INCEPTION], tmp / "gen_small")}}


def _direct_inception(gen, ref):
    """torch-fidelity's network built from the weights file, called once on both sets."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(inception_file()))
    with torch.no_grad():
        feats = net.eval()(torch.cat([gen, ref]))[0].numpy()
    return feats[:len(gen)], feats[len(gen):]


def _direct_dinov2(images):
    from transformers import Dinov2Model

    from evalrun import tiny

    model = Dinov2Model.from_pretrained(tiny.resolve("evalrun/tiny-dinov2")).eval()
    x = torch.nn.functional.interpolate(images.float(), size=(224, 224), mode="bicubic", antialias=True) / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(pixel_values=x).pooler_output.numpy()


def _direct_clip(images):
    from transformers import CLIPModel, CLIPProcessor

    from evalrun import tiny

    path = tiny.resolve("evalrun/tiny-clip")
    model, proc = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    pixels = proc.image_processor(images=[im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model.get_image_features(pixel_values=pixels).pooler_output.numpy()


BACKBONES = {
    "inception": ({"feature_extractor": "inception", "feature_extractor_path": INCEPTION}, _direct_inception),
    "dinov2": ({"feature_extractor": "dinov2", "feature_extractor_path": "evalrun/tiny-dinov2",
                "feature_extractor_options": {"pos_embedding": "transformers"}}, _direct_dinov2),
    "clip": ({"feature_extractor": "clip", "feature_extractor_path": "evalrun/tiny-clip"}, _direct_clip),
}


@pytest.mark.parametrize("name", list(BACKBONES) + ["torchscript", "python"])
def test_fd_equals_frechet_of_direct_features_and_zero_against_itself(data, name):
    if name == "torchscript":
        settings = {"feature_extractor": "torchscript", "feature_extractor_path": str(data["ts"])}
        direct = lambda im: torch.jit.load(str(data["ts"]))(im.float() / 255).detach().numpy()  # noqa: E731
    elif name == "python":
        settings = {"feature_extractor": {"_target_": "dist_helpers.TinyEncoder", "dim": 8}}
        direct = lambda im: data["module"](im.float() / 255).detach().numpy()  # noqa: E731
    else:
        settings, direct = BACKBONES[name]
    sets = data["small"] if name == "inception" else data
    if name == "inception":
        gen_features, ref_features = direct(sets["gen"], sets["ref"])
    else:
        gen_features, ref_features = direct(sets["gen"]), direct(sets["ref"])
    result, metric, _ = run_metric("fd", sets["gen"], sets["ref_dir"], data["cache"], **settings)
    want = frechet64(gen_features, ref_features)
    assert result.values["fd"] == pytest.approx(want, rel=1e-6), name
    assert result.values["fd"] > 1e-3
    same, *_ = run_metric("fd", sets["gen"], sets["gen_dir"], data["cache"], **settings)
    assert abs(same.values["fd"]) < 1e-9 * max(1.0, result.values["fd"]), (name, same.values["fd"])
    # A class's arguments and an extractor's options are part of the column (a sweep over them is never
    # averaged as seeds): dinov2's pos_embedding moves FD.
    column = {"python": 'python:dist_helpers.TinyEncoder [{"dim": 8}]', "dinov2": 'dinov2 [{"pos_embedding": "transformers"}]'}
    assert metric.settings()["feature_extractor"] == column.get(name, name)


def test_torchscript_resize_and_identity(data):
    """Resized input is what the module sees; identity follows content and resize, never the path."""
    from evalrun.metrics.features import build_extractor

    ts = build_extractor("torchscript", path=str(data["ts"]), resize=16)
    module = torch.jit.load(str(data["ts"]))
    x = torch.nn.functional.interpolate(data["gen"].float() / 255, size=(16, 16), mode="bicubic", antialias=True).clamp(0, 1)
    np.testing.assert_array_equal(ts.extract(data["gen"])["embedding"], module(x).detach().numpy())
    copy = data["tmp"] / "elsewhere" / "copy.ts"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(data["ts"], copy)
    same = build_extractor("torchscript", path=str(copy), resize=16)
    other_size = build_extractor("torchscript", path=str(data["ts"]), resize=[16, 20])
    assert same.key == ts.key and other_size.key != ts.key and ts.weights_identity()["sha256"] == same.weights_identity()["sha256"]
    torch.jit.script(TinyEncoder(4).eval()).save(str(copy))   # new content at the same path: a new key
    assert build_extractor("torchscript", path=str(copy), resize=16).key != ts.key


def test_user_backbone_errors_are_one_line(data):
    from evalrun.errors import ConfigError, EvalrunError
    from evalrun.metrics.features import build_extractor

    (data["tmp"] / "not.ts").write_bytes(b"not torchscript")
    with pytest.raises(EvalrunError, match="not a TorchScript file"):
        build_extractor("torchscript", path=str(data["tmp"] / "not.ts"))
    with pytest.raises(ConfigError, match="cannot import"):
        build_extractor("python", target="no_such_package.Encoder")
    with pytest.raises(ConfigError, match="resize applies to your own backbone"):
        run_metric("fd", data["gen"], data["ref_dir"], data["cache"], feature_extractor="dinov2", resize=64)


def test_fd_dinov2_uses_the_hub_position_embedding_resize():
    """facebookresearch/dinov2 ``interpolate_pos_encoding`` (transcribed here from the hub code) is
    what fd_dinov2 applies; transformers' own resize samples the grid elsewhere."""
    import math

    from evalrun.metrics.features import build_extractor

    def hub(pos_embed, w, h, patch_size=14):   # the hub function, its variable names kept
        N = pos_embed.shape[1] - 1
        class_pos_embed, patch_pos_embed = pos_embed.float()[:, 0], pos_embed.float()[:, 1:]
        dim = pos_embed.shape[-1]
        w0, h0 = w // patch_size + 0.1, h // patch_size + 0.1
        patch_pos_embed = torch.nn.functional.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(float(w0 / math.sqrt(N)), float(h0 / math.sqrt(N))), mode="bicubic")
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    ours = build_extractor("dinov2", path="evalrun/tiny-dinov2")
    lib = build_extractor("dinov2", path="evalrun/tiny-dinov2", pos_embedding="transformers")
    emb = ours.model.embeddings
    tokens = torch.zeros(1, 16 * 16 + 1, emb.position_embeddings.shape[-1])
    with torch.no_grad():
        got = emb.interpolate_pos_encoding(tokens, 224, 224)
        theirs = lib.model.embeddings.interpolate_pos_encoding(tokens, 224, 224)
        want = hub(emb.position_embeddings, 224, 224)
    assert torch.equal(got, want) and not torch.allclose(theirs, want, atol=1e-6)
    assert ours.key != lib.key   # the choice is part of the features' identity


def test_fd_dinov2_metric_and_bootstrap_interval(data):
    """fd_dinov2's defaults (hub resize) against direct hub-resized features; with bootstrap on, an
    interval that holds the full-sample value and narrows as N grows."""
    result, metric, _ = run_metric("fd_dinov2", data["gen"], data["ref_dir"], data["cache"],
                                   feature_extractor_path="evalrun/tiny-dinov2", bootstrap=50)
    gen = metric.store().features(metric.extractor, _batch(data["gen"]))["embedding"]
    ref = metric.reference.features(metric.extractor, "embedding", "fd_dinov2")[0]
    v = result.values
    assert v["fd_dinov2"] == pytest.approx(frechet64(gen, ref), rel=1e-6)
    assert set(v) == {"fd_dinov2", "fd_dinov2_ci95_low", "fd_dinov2_ci95_high"}
    assert v["fd_dinov2_ci95_low"] < v["fd_dinov2_ci95_high"]
    assert result.info["fd_dinov2_bootstrap"]["reference_resampled"] == N
    assert metric.settings()["bootstrap_seed"] == 0 and "fd_dinov2.bootstrap_seed" not in metric.settings()


def test_fd_bootstrap_contains_value_and_narrows(tmp_path):
    """A cheap backbone (channel means), far-apart sets: the interval holds the full-sample FD and is
    narrower at N=400 than at N=40."""
    from dist_helpers import colour_images

    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400):
        ref = colour_images(rng.integers(60, 200, size=(n, 3)))
        gen = colour_images(rng.integers(90, 230, size=(n, 3)))
        ref_dir = save_pngs(ref, tmp_path / f"ref{n}")
        result, *_ = run_metric("fd", gen, ref_dir, tmp_path / "cache", bootstrap=200,
                                feature_extractor={"_target_": "dist_helpers.ChannelMeans", "scale": 10.0})
        v = result.values
        assert v["fd_ci95_low"] <= v["fd"] <= v["fd_ci95_high"], (n, v)
        widths.append(v["fd_ci95_high"] - v["fd_ci95_low"])
    assert widths[1] < 0.6 * widths[0], widths


def _batch(images):
    from evalrun.metrics.base import ImageBatch

    return ImageBatch(images, [{} for _ in images])


def test_config_files_match_the_code_and_validate_before_torch():
    """Each new metric's yaml lists exactly its settings; a bad backbone is refused at validation."""
    import inspect

    from omegaconf import OmegaConf

    from conftest import assert_refused_before_import
    from evalrun.metrics.registry import metric_class
    from evalrun.paths import CONF_DIR

    for name in ("fd", "fd_dinov2", "sfid", "prdc", "adm", "fid_inf", "fid", "inception_score"):
        cfg = OmegaConf.load(CONF_DIR / "metrics" / f"{name}.yaml")
        params = set(inspect.signature(metric_class(name).__init__).parameters) - {"self", "context"}
        assert set(cfg[name]) == params, (name, set(cfg[name]) ^ params)
        assert metric_class(name).outputs[0].direction == ("higher" if name in ("inception_score", "prdc", "adm") else "lower")
    assert OmegaConf.load(CONF_DIR / "reference" / "adm.yaml").kind == "adm"
    assert_refused_before_import([(bad,) for bad in ("metrics.fd.feature_extractor=torchscript", "metrics.fd.feature_extractor=nope",
                                                     "metrics.fd.bootstrap=1", "metrics.prdc.nearest_k=0",
                                                     "metrics.adm.arithmetic=float8")],
                                 common=("metrics=[fd,prdc,adm]", "reference=folder", "reference.path=."),
                                 heavy=("torch", "transformers"))

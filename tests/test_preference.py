"""Preference scorers (PickScore, HPSv2.1, ImageReward) against independent computations.

Each tiny twin is built once (random weights, the real checkpoint's file layout) and loaded
back through the scorer's loader. The references follow the authors' code:

- PickScore: transformers' AutoProcessor/AutoModel called as the PickScore README does;
- HPSv2.1: open_clip's create_model/get_tokenizer, ``torch.load(...)['state_dict']`` and
  ``model(image, text)`` as ``hpsv2/img_score.py`` does, with HPSv2's ``preprocess_val``
  (``light_augmentation=True``: ToTensor -> ResizeMaxSize -> normalise) re-typed from its
  ``transform.py``;
- ImageReward: a forward pass re-typed from the authors' ``vit.py``/``med.py``/``ImageReward.py``
  in plain torch ops on the raw checkpoint tensors (no transformers model classes, no key
  mapping). With ``EVALRUN_IMAGE_REWARD_PYTHON`` pointing at a Python that has the
  ``image-reward`` package (it needs transformers 4.x, timm 0.6.13, fairscale: a separate
  venv), the authors' own ``ImageReward.score``/``inference_rank`` are compared too; with
  ``EVALRUN_HPSV2_OPEN_CLIP`` pointing at HPSv2's vendored ``hpsv2/src/open_clip`` folder, HPSv2's
  own model, ``preprocess_val`` and tokenizer are.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from evalrun.errors import EvalrunError
from evalrun.metrics.preference import hps as hps_mod
from evalrun.metrics.preference import image_reward as ir_mod
from evalrun.metrics.preference import image_reward_tiny as ir_tiny
from evalrun.metrics.preference import pickscore as ps_mod
from evalrun.metrics.preference._common import to_pil

LONG = "a very detailed painting of a cat with " + "red and blue stripes " * 30  # > 77 and > 35 tokens
PROMPTS = ["a photo of a cat", "a red dog on the grass", LONG, "an orange, in the style of a painting"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 256, 200), dtype=torch.uint8, generator=g)  # not square: crops and pads


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preference-twins")
    dirs = {"pickscore": root / "pickscore", "hps": root / "hps", "image_reward": root / "image_reward"}
    ps_mod.build_tiny_pickscore(dirs["pickscore"])
    if _has_open_clip():
        hps_mod.build_tiny_hps(dirs["hps"])
    ir_tiny.build_tiny_image_reward(dirs["image_reward"])
    return dirs


def _has_open_clip() -> bool:
    try:
        import open_clip  # noqa: F401
    except ImportError:
        return False
    return True


needs_open_clip = pytest.mark.skipif(not _has_open_clip(), reason="open_clip_torch not installed (evalrun[hps])")


@pytest.fixture(scope="module")
def pickscore(twins):
    return ps_mod.load_pickscore(str(twins["pickscore"]), key="metrics.pickscore.model",
                                 processor=str(twins["pickscore"] / "processor"))


@pytest.fixture(scope="module")
def hps(twins):
    if not _has_open_clip():
        pytest.skip("open_clip_torch not installed (evalrun[hps])")
    return hps_mod.load_hps(str(twins["hps"] / hps_mod.FILENAME))


@pytest.fixture(scope="module")
def image_reward(twins):
    return ir_mod.load_image_reward(str(twins["image_reward"]), tokenizer=str(twins["image_reward"] / "tokenizer"))


# ----------------------------------------------------------------------------- PickScore
def test_pickscore_equals_authors_snippet(pickscore, twins, images):
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(twins["pickscore"] / "processor")
    model = AutoModel.from_pretrained(twins["pickscore"]).eval()

    def features(out):  # transformers 5 returns an output object whose pooler_output is the projection
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    expected = []
    for prompt, pil in zip(PROMPTS, to_pil(images)):  # the README's calc_probs, before the softmax
        image_inputs = processor(images=[pil], padding=True, truncation=True, max_length=77, return_tensors="pt")
        text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            image_embs = features(model.get_image_features(**image_inputs))
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = features(model.get_text_features(**text_inputs))
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            expected.append((model.logit_scale.exp() * (text_embs @ image_embs.T)[0])[0].item())
    got = pickscore.score(images, PROMPTS)
    assert got.dtype == torch.float64 and got.shape == (4,)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-4)
    assert got.std() > 0.5  # the twin's scores differ between images: the comparison means something


def test_pickscore_truncation_keeps_end_token_and_counts(pickscore):
    tok = pickscore.processor.tokenizer
    # character tokenizer: n characters without spaces are n tokens, plus start and end
    assert pickscore.count_truncated(["x" * 75, "x" * 76]) == 1
    assert pickscore.count_truncated(PROMPTS) == 1
    ids = tok([LONG], truncation=True, max_length=77)["input_ids"][0]
    assert len(ids) == 77 and ids[-1] == tok.eos_token_id


# ----------------------------------------------------------------------------- HPSv2.1
class ResizeMaxSize(torch.nn.Module):
    """HPSv2's hpsv2/src/open_clip/transform.py ResizeMaxSize, re-typed."""

    def __init__(self, max_size, fill=0):
        super().__init__()
        self.max_size, self.fill = max_size, fill

    def forward(self, img):
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        height, width = img.shape[1:]
        scale = self.max_size / float(max(height, width))
        if scale != 1.0:
            new_size = tuple(round(dim * scale) for dim in (height, width))
            img = TF.resize(img, new_size, InterpolationMode.BICUBIC)
            pad_h, pad_w = self.max_size - new_size[0], self.max_size - new_size[1]
            img = TF.pad(img, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=self.fill)
        return img


@needs_open_clip
def test_hps_equals_hpsv2_score_function(hps, twins, images):
    import open_clip
    from torchvision.transforms import Compose, Normalize, ToTensor

    arch = f"local-dir:{twins['hps']}"  # HPSv2 passes 'ViT-H-14'; the twin's config sits beside its weights
    model = open_clip.create_model(arch, pretrained=None, load_weights=False, output_dict=True)
    checkpoint = torch.load(twins["hps"] / hps_mod.FILENAME, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    preprocess_val = Compose([lambda im: im if im.mode == "RGBA" else im.convert("RGB"), ToTensor(),
                              ResizeMaxSize(224, fill=0), Normalize(hps_mod.OPENAI_MEAN, hps_mod.OPENAI_STD)])
    expected = []
    for prompt, pil in zip(PROMPTS, to_pil(images)):
        with torch.no_grad():
            image = preprocess_val(pil).unsqueeze(0)
            text = tokenizer([prompt])
            outputs = model(image, text)
            logits_per_image = outputs["image_features"] @ outputs["text_features"].T
            expected.append(torch.diagonal(logits_per_image)[0].item())
    got = hps.score(images, PROMPTS)
    assert got.dtype == torch.float64 and got.shape == (4,)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)
    assert got.std() > 0.01


@needs_open_clip
@pytest.mark.skipif(not os.environ.get("EVALRUN_HPSV2_OPEN_CLIP"),
                    reason="set EVALRUN_HPSV2_OPEN_CLIP to HPSv2's vendored hpsv2/src/open_clip folder")
def test_hps_equals_hpsv2s_own_open_clip(hps, twins):
    """HPSv2's vendored open_clip (its create_model_and_transforms with light_augmentation=True, its
    tokenize) on the twin, as img_score.py calls it, over portrait, landscape, square and large images."""
    import importlib.util

    src = Path(os.environ["EVALRUN_HPSV2_OPEN_CLIP"])
    spec = importlib.util.spec_from_file_location("hpsv2_open_clip", src / "__init__.py",
                                                  submodule_search_locations=[str(src)])
    vendored = importlib.util.module_from_spec(spec)
    sys.modules["hpsv2_open_clip"] = vendored
    spec.loader.exec_module(vendored)
    cfg = json.loads((twins["hps"] / hps_mod.CONFIG_NAME).read_text())["model_cfg"]
    sys.modules["hpsv2_open_clip.factory"]._MODEL_CONFIGS["evalrun-tiny-hps"] = cfg
    model, _, preprocess_val = vendored.create_model_and_transforms(
        "evalrun-tiny-hps", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False,
        force_custom_text=False, force_patch_dropout=False, force_image_size=None, pretrained_image=False,
        image_mean=None, image_std=None, light_augmentation=True, aug_cfg={}, output_dict=True,
        with_score_predictor=False, with_region_predictor=False)
    model.load_state_dict(torch.load(twins["hps"] / hps_mod.FILENAME, map_location="cpu",
                                     weights_only=True)["state_dict"])
    model.eval()
    tokenizer = vendored.get_tokenizer("evalrun-tiny-hps")
    g = torch.Generator().manual_seed(1)
    for shape in [(4, 3, 256, 200), (4, 3, 180, 320), (4, 3, 224, 224), (4, 3, 512, 512)]:
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        expected = []
        for prompt, pil in zip(PROMPTS, to_pil(images)):
            with torch.no_grad():
                outputs = model(preprocess_val(pil).unsqueeze(0), tokenizer([prompt]))
                expected.append(torch.diagonal(outputs["image_features"] @ outputs["text_features"].T)[0].item())
        torch.testing.assert_close(hps.score(images, PROMPTS), torch.tensor(expected, dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)


@needs_open_clip
def test_hps_preprocessing_is_hpsv2s_not_open_clips_val_transform(hps, twins, images):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    model = open_clip.create_model(f"local-dir:{twins['hps']}", pretrained=None, load_weights=False)
    open_clip_val = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)  # crops
    ours = hps_mod.hps_preprocess(images[:1], 224)[0]
    theirs = open_clip_val(to_pil(images[:1])[0])
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().max() > 0.5  # zero-padded sides vs cropped content


@needs_open_clip
def test_hps_truncation_keeps_end_token_and_counts(hps):
    assert hps.count_truncated(["cat " * 75, "cat " * 76]) == 1  # 'cat' is one BPE token; + start and end
    assert hps.count_truncated(PROMPTS) == 1
    tokens = hps.tokenizer([LONG])[0]
    assert tokens[-1].item() == hps.tokenizer.eot_token_id and (tokens != 0).all()


def test_open_clip_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    with pytest.raises(EvalrunError, match=r"pip install 'evalrun\[hps\]'") as err:
        hps_mod.load_hps("/nonexistent/HPS_v2.1_compressed.pt")
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- ImageReward
def _authors_image_reward(ckpt: Path, med: dict, vocab_dir: Path, pil_images, prompts, vit_heads: int):
    """ImageReward.score, re-typed in plain torch from the authors' ImageReward.py, vit.py and med.py."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor
    from transformers import BertTokenizer

    sd = torch.load(ckpt, map_location="cpu", weights_only=True)
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)  # BLIP's init_tokenizer
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    preprocess = Compose([Resize(224, interpolation=InterpolationMode.BICUBIC), CenterCrop(224),
                          lambda im: im.convert("RGB"), ToTensor(),
                          Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])

    def vit(x):
        p = "blip.visual_encoder."
        w = sd[p + "patch_embed.proj.weight"]
        x = F.conv2d(x, w, sd[p + "patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
        B, C = x.shape[0], w.shape[0]
        x = torch.cat((sd[p + "cls_token"].expand(B, -1, -1), x), dim=1)
        x = x + sd[p + "pos_embed"][:, :x.size(1), :]
        i = 0
        while f"{p}blocks.{i}.norm1.weight" in sd:
            b = f"{p}blocks.{i}."
            h = F.layer_norm(x, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
            N = h.shape[1]
            qkv = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
            qkv = qkv.reshape(B, N, 3, vit_heads, C // vit_heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = ((q @ k.transpose(-2, -1)) * (C // vit_heads) ** -0.5).softmax(dim=-1)
            h = (attn @ v).transpose(1, 2).reshape(B, N, C)
            x = x + F.linear(h, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
            h = F.layer_norm(x, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
            h = F.linear(F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
                         sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
            x = x + h
            i += 1
        return F.layer_norm(x, (C,), sd[p + "norm.weight"], sd[p + "norm.bias"], eps=1e-6)

    def bert(ids, mask, enc):
        t = "blip.text_encoder."
        H, heads, eps = med["hidden_size"], med["num_attention_heads"], med["layer_norm_eps"]
        d = H // heads
        pos = sd[t + "embeddings.position_ids"][:, :ids.shape[1]]
        x = F.embedding(ids, sd[t + "embeddings.word_embeddings.weight"]) + \
            F.embedding(pos, sd[t + "embeddings.position_embeddings.weight"])
        x = F.layer_norm(x, (H,), sd[t + "embeddings.LayerNorm.weight"], sd[t + "embeddings.LayerNorm.bias"], eps)
        self_mask = (1.0 - mask[:, None, None, :].float()) * -10000.0  # get_extended_attention_mask
        cross_mask = torch.zeros(1, 1, 1, enc.shape[1])  # invert_attention_mask of all ones

        def attention(x, kv, add_mask, prefix):
            def split(y):
                return y.view(y.shape[0], y.shape[1], heads, d).permute(0, 2, 1, 3)
            q = split(F.linear(x, sd[prefix + "self.query.weight"], sd[prefix + "self.query.bias"]))
            k = split(F.linear(kv, sd[prefix + "self.key.weight"], sd[prefix + "self.key.bias"]))
            v = split(F.linear(kv, sd[prefix + "self.value.weight"], sd[prefix + "self.value.bias"]))
            scores = q @ k.transpose(-1, -2) / math.sqrt(d) + add_mask
            ctx = (scores.softmax(dim=-1) @ v).permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], H)
            out = F.linear(ctx, sd[prefix + "output.dense.weight"], sd[prefix + "output.dense.bias"])
            return F.layer_norm(out + x, (H,), sd[prefix + "output.LayerNorm.weight"],
                                sd[prefix + "output.LayerNorm.bias"], eps)

        for i in range(med["num_hidden_layers"]):
            b = f"{t}encoder.layer.{i}."
            x = attention(x, x, self_mask, b + "attention.")
            x = attention(x, enc, cross_mask, b + "crossattention.")  # mode='multimodal'
            h = F.gelu(F.linear(x, sd[b + "intermediate.dense.weight"], sd[b + "intermediate.dense.bias"]))
            h = F.linear(h, sd[b + "output.dense.weight"], sd[b + "output.dense.bias"])
            x = F.layer_norm(h + x, (H,), sd[b + "output.LayerNorm.weight"], sd[b + "output.LayerNorm.bias"], eps)
        return x

    rewards = []
    with torch.no_grad():
        for prompt, pil in zip(prompts, pil_images):
            text_input = tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
            image_embeds = vit(preprocess(pil).unsqueeze(0))
            hidden = bert(text_input.input_ids, text_input.attention_mask, image_embeds)
            r = hidden[:, 0, :].float()
            for i in (0, 2, 4, 6, 7):  # MLP: Linear/Dropout chain, no activations
                r = F.linear(r, sd[f"mlp.layers.{i}.weight"], sd[f"mlp.layers.{i}.bias"])
            rewards.append(((r - 0.16717362830052426) / 1.0333394966054072).item())
    return rewards


def test_image_reward_equals_retyped_authors_forward(image_reward, twins, images):
    d = twins["image_reward"]
    med = json.loads((d / "med_config.json").read_text())
    expected = _authors_image_reward(d / "ImageReward.pt", med, d / "tokenizer", to_pil(images), PROMPTS, vit_heads=2)
    got = image_reward.score(images, PROMPTS)
    assert got.dtype == torch.float64 and got.shape == (4,)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    assert got.std() > 0.05


PACKAGE_CHECK = textwrap.dedent('''
    import importlib.util, json, sys, types
    ckpt_dir, pairs = sys.argv[1], json.loads(sys.argv[2])
    spec = importlib.util.find_spec("ImageReward")  # skip the package __init__ (ReFL needs datasets, diffusers)
    pkg = types.ModuleType("ImageReward"); pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["ImageReward"] = pkg
    import torch
    import ImageReward.ImageReward as irmod
    import ImageReward.models.BLIP.blip_pretrain as bp
    from ImageReward.models.BLIP.vit import VisionTransformer
    from ImageReward.utils import load
    from transformers import BertTokenizer
    orig = BertTokenizer.from_pretrained.__func__
    BertTokenizer.from_pretrained = classmethod(  # the twin's vocabulary for the hub's bert-base-uncased
        lambda cls, name, *a, **k: orig(cls, ckpt_dir + "/tokenizer" if name == "bert-base-uncased" else name, *a, **k))
    bp.create_vit = lambda vit, size, *a, **k: (  # the twin's ViT size (ImageReward hard-codes ViT-L)
        VisionTransformer(img_size=size, patch_size=32, embed_dim=128, depth=2, num_heads=2), 128)
    MLP = irmod.MLP
    irmod.MLP = lambda size: MLP(64)  # ImageReward hard-codes MLP(768)
    model = load(ckpt_dir + "/ImageReward.pt", device="cpu", med_config=ckpt_dir + "/med_config.json")
    msg = model.load_state_dict(torch.load(ckpt_dir + "/ImageReward.pt", weights_only=True), strict=False)
    with torch.no_grad():
        single = [model.score(p, path) for p, path in pairs]
        rank = model.inference_rank(pairs[0][0], [path for _, path in pairs])[1]
    print(json.dumps({"missing": msg.missing_keys, "unexpected": msg.unexpected_keys, "single": single, "rank": rank}))
''')


@pytest.mark.skipif(not os.environ.get("EVALRUN_IMAGE_REWARD_PYTHON"),
                    reason="set EVALRUN_IMAGE_REWARD_PYTHON to a Python with the image-reward package")
def test_image_reward_equals_authors_package(image_reward, twins, images, tmp_path):
    pairs = []
    for i, (prompt, pil) in enumerate(zip(PROMPTS, to_pil(images))):
        pil.save(tmp_path / f"{i}.png")
        pairs.append([prompt, str(tmp_path / f"{i}.png")])
    proc = subprocess.run([os.environ["EVALRUN_IMAGE_REWARD_PYTHON"], "-c", PACKAGE_CHECK, str(twins["image_reward"]),
                           json.dumps(pairs)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["missing"] == [] and result["unexpected"] == []  # the twin has exactly the authors' keys
    torch.testing.assert_close(image_reward.score(images, PROMPTS), torch.tensor(result["single"], dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)
    same_prompt = image_reward.score(images, [PROMPTS[0]] * len(images))
    torch.testing.assert_close(same_prompt, torch.tensor(result["rank"], dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_image_reward_truncation_counts(image_reward):
    tok = image_reward.tokenizer
    assert image_reward.count_truncated(["cat " * 33, "cat " * 34]) == 1  # 'cat' is one token; + [CLS], [SEP]
    assert image_reward.count_truncated(PROMPTS) == 1
    ids = image_reward.tokenize([LONG])["input_ids"][0]
    assert len(ids) == 35 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_image_reward_key_mapping_uses_every_key(image_reward, twins):
    state = torch.load(twins["image_reward"] / "ImageReward.pt", weights_only=True)
    mapped, ignored = ir_mod.map_checkpoint(state)
    assert len(mapped) + len(ignored) == len(state)
    assert sorted(ignored) == sorted(["blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight",
                                      "blip.text_proj.bias", "blip.text_encoder.embeddings.position_ids"])
    assert sorted(image_reward.net.state_dict()) == sorted(mapped)  # nothing missing, nothing left over
    for name, tensor in image_reward.net.state_dict().items():
        assert torch.equal(tensor.float(), mapped[name].float()), name


def _real_image_reward_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the authors' ImageReward module at full size (ViT-L/16 at 224, BERT-base with
    cross-attention, MLP(768)); 625 keys, as its state_dict() lists them with BLIP's med_config.json."""
    s: dict[str, tuple[int, ...]] = {}
    v, t = "blip.visual_encoder.", "blip.text_encoder."
    s |= {v + "cls_token": (1, 1, 1024), v + "pos_embed": (1, 197, 1024),
          v + "patch_embed.proj.weight": (1024, 3, 16, 16), v + "patch_embed.proj.bias": (1024,),
          v + "norm.weight": (1024,), v + "norm.bias": (1024,)}
    for i in range(24):
        b = f"{v}blocks.{i}."
        for n, shape in (("norm1", 1024), ("norm2", 1024)):
            s |= {b + n + ".weight": (shape,), b + n + ".bias": (shape,)}
        s |= {b + "attn.qkv.weight": (3072, 1024), b + "attn.qkv.bias": (3072,), b + "attn.proj.weight": (1024, 1024),
              b + "attn.proj.bias": (1024,), b + "mlp.fc1.weight": (4096, 1024), b + "mlp.fc1.bias": (4096,),
              b + "mlp.fc2.weight": (1024, 4096), b + "mlp.fc2.bias": (1024,)}
    s |= {t + "embeddings.position_ids": (1, 512), t + "embeddings.word_embeddings.weight": (30524, 768),
          t + "embeddings.position_embeddings.weight": (512, 768), t + "embeddings.LayerNorm.weight": (768,),
          t + "embeddings.LayerNorm.bias": (768,)}
    for i in range(12):
        b = f"{t}encoder.layer.{i}."
        for kind, kv in (("attention", 768), ("crossattention", 1024)):
            s |= {b + kind + ".self.query.weight": (768, 768), b + kind + ".self.key.weight": (768, kv),
                  b + kind + ".self.value.weight": (768, kv), b + kind + ".output.dense.weight": (768, 768)}
            for n in ("self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"):
                s[b + kind + "." + n + ".bias"] = (768,)
            s[b + kind + ".output.LayerNorm.weight"] = (768,)
        s |= {b + "intermediate.dense.weight": (3072, 768), b + "intermediate.dense.bias": (3072,),
              b + "output.dense.weight": (768, 3072), b + "output.dense.bias": (768,),
              b + "output.LayerNorm.weight": (768,), b + "output.LayerNorm.bias": (768,)}
    s |= {"blip.vision_proj.weight": (256, 1024), "blip.vision_proj.bias": (256,),
          "blip.text_proj.weight": (256, 768), "blip.text_proj.bias": (256,)}
    for i, (n_in, n_out) in zip((0, 2, 4, 6, 7), ((768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1))):
        s |= {f"mlp.layers.{i}.weight": (n_out, n_in), f"mlp.layers.{i}.bias": (n_out,)}
    return s


def test_image_reward_mapping_covers_the_real_architecture():
    shapes = _real_image_reward_shapes()
    assert len(shapes) == 625
    med = {"hidden_size": 768, "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
           "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "vocab_size": 30524,
           "hidden_act": "gelu", "encoder_width": 768, "add_cross_attention": True}
    state = {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}
    mapped, ignored = ir_mod.map_checkpoint(state)
    vision, text, sizes = ir_mod.configs_from_checkpoint(state, med)
    assert (vision.hidden_size, vision.num_hidden_layers) == (1024, 24)
    assert (vision.num_attention_heads, vision.patch_size) == (16, 16)
    assert sizes == [768, 1024, 128, 64, 16, 1]
    with torch.device("meta"):
        net = ir_mod.ImageRewardNet(vision, text, sizes)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert set(expected) == set(mapped) and len(ignored) == 5
    assert all(expected[k] == tuple(mapped[k].shape) for k in expected)


def test_image_reward_refuses_unknown_and_missing_keys(twins, tmp_path):
    state = torch.load(twins["image_reward"] / "ImageReward.pt", weights_only=True)
    with pytest.raises(EvalrunError, match="does not know"):
        ir_mod.map_checkpoint({**state, "blip.itm_head.weight": torch.zeros(2, 64)})
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "med_config.json").write_text((twins["image_reward"] / "med_config.json").read_text())
    kept = {k: v for k, v in state.items() if "layer.1.crossattention.self.key" not in k}
    torch.save(kept, folder / "ImageReward.pt")
    with pytest.raises(EvalrunError, match="lacks 2 tensors"):
        ir_mod.load_image_reward(str(folder), tokenizer=str(twins["image_reward"] / "tokenizer"))


# ----------------------------------------------------------------------------- all scorers
def test_scores_do_not_depend_on_batch_size(pickscore, image_reward, images):
    for scorer in (pickscore, image_reward):
        whole = scorer.score(images, PROMPTS)
        scorer.batch_size, old = 1, scorer.batch_size
        try:
            one_by_one = scorer.score(images, PROMPTS)
        finally:
            scorer.batch_size = old
        torch.testing.assert_close(whole, one_by_one, rtol=1e-5, atol=1e-5)


def test_info_records_hashes_preprocessing_and_versions(pickscore, image_reward, twins):
    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    scorers = [(pickscore, twins["pickscore"] / "model.safetensors"),
               (image_reward, twins["image_reward"] / "ImageReward.pt")]
    if _has_open_clip():
        scorers.append((hps_mod.load_hps(str(twins["hps"])), twins["hps"] / hps_mod.FILENAME))
    for scorer, weights in scorers:
        info = scorer.info()
        json.dumps(info)  # plain data
        assert info["weights_sha256"][weights.name] == sha(weights)
        assert info["dtype"] == "float32" and "torch" in info["versions"]
        assert info["preprocessing"] and info["text_max_length"] in (77, 35)
    assert image_reward.info()["weights_sha256"]["med_config.json"] == sha(twins["image_reward"] / "med_config.json")


def test_tiny_names_resolve_through_the_evalrun_cache():
    scorer = ir_mod.load_image_reward("evalrun/tiny-image-reward")  # tokenizer/ beside the checkpoint
    assert scorer.info()["tokenizer"].endswith("tokenizer")
    assert scorer.score(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), ["a cat"]).shape == (1,)


def test_missing_checkpoints_offline_name_the_file_and_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    cases = [
        (lambda: ps_mod.load_pickscore("yuvalkirstain/PickScore_v1", processor=str(tmp_path)),
         "yuvalkirstain/PickScore_v1", "metrics.pickscore.model=DIR"),
        (lambda: ps_mod.load_pickscore(str(tmp_path / "nowhere")), "nowhere", "no such folder"),  # a path: no hub
        (lambda: ir_mod.load_image_reward("THUDM/ImageReward"), "ImageReward.pt med_config.json",
         "metrics.image_reward.checkpoint=DIR"),
        (lambda: ir_mod.load_image_reward(str(tmp_path / "ImageReward.pt")), "ImageReward.pt",
         "metrics.image_reward.checkpoint=DIR"),
    ]
    if _has_open_clip():
        cases += [
            (lambda: hps_mod.load_hps("xswu/HPSv2"), "HPS_v2.1_compressed.pt", "metrics.hps.checkpoint=DIR"),
            (lambda: hps_mod.load_hps(str(tmp_path / "HPS_v2.1_compressed.pt")), "HPS_v2.1_compressed.pt",
             "metrics.hps.checkpoint=DIR"),
        ]
    for load, filename, key in cases:
        with pytest.raises(EvalrunError) as err:
            load()
        message = str(err.value)
        assert "\n" not in message and filename in message and key in message, message


def test_missing_processor_and_tokenizer_name_their_keys(twins, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EvalrunError, match=r"laion/CLIP-ViT-H-14-laion2B-s32B-b79K.*metrics\.pickscore\.processor=DIR"):
        ps_mod.load_pickscore(str(twins["pickscore"]), processor=ps_mod.PROCESSOR)
    with pytest.raises(EvalrunError, match=r"bert-base-uncased.*metrics\.image_reward\.tokenizer=DIR"):
        ir_mod.load_image_reward(str(twins["image_reward"]), tokenizer="bert-base-uncased")


class Payload:
    """Unpickling this calls open(marker, 'w'): code execution, which weights_only loading must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_with_code_are_refused_without_running(twins, tmp_path):
    marker = tmp_path / "pwned"
    ir_state = torch.load(twins["image_reward"] / "ImageReward.pt", weights_only=True)
    folder = tmp_path / "ir"
    folder.mkdir()
    (folder / "med_config.json").write_text((twins["image_reward"] / "med_config.json").read_text())
    torch.save({**ir_state, "payload": Payload(marker)}, folder / "ImageReward.pt")
    with pytest.raises(EvalrunError, match="weights_only") as err:
        ir_mod.load_image_reward(str(folder), tokenizer=str(twins["image_reward"] / "tokenizer"))
    assert "\n" not in str(err.value) and "refusing" in str(err.value)
    assert not marker.exists()
    # a whole pickled module (how MPS ships its checkpoint) is refused the same way
    torch.save({"state_dict": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    from evalrun.metrics.preference._common import load_weights

    with pytest.raises(EvalrunError, match="refusing"):
        load_weights(tmp_path / "module.pt", "a checkpoint", "metrics.x.checkpoint")
    # the legacy format (a bare pickle) too; a text file given by mistake is no checkpoint, not a pickle
    torch.save({"state_dict": torch.nn.Linear(2, 2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(EvalrunError, match="refusing"):
        load_weights(tmp_path / "legacy.pt", "a checkpoint", "metrics.x.checkpoint")
    (tmp_path / "README.md").write_text("# notes\n")
    with pytest.raises(EvalrunError, match=r"README.md' is not a checkpoint file \(neither.*point metrics.x.checkpoint "):
        load_weights(tmp_path / "README.md", "a checkpoint", "metrics.x.checkpoint")
    if _has_open_clip():
        hps_state = torch.load(twins["hps"] / hps_mod.FILENAME, weights_only=True)
        folder = tmp_path / "hps"
        folder.mkdir()
        (folder / hps_mod.CONFIG_NAME).write_text((twins["hps"] / hps_mod.CONFIG_NAME).read_text())
        torch.save({"state_dict": hps_state["state_dict"], "payload": Payload(marker)}, folder / hps_mod.FILENAME)
        with pytest.raises(EvalrunError, match="refusing"):
            hps_mod.load_hps(str(folder / hps_mod.FILENAME))
        assert not marker.exists()


def test_a_pickled_bin_in_a_transformers_model_folder_is_one_line_without_running(tmp_path):
    """transformers refuses a pickled pytorch_model.bin with weights_only and raises UnpicklingError, which
    the loaders did not catch: a traceback (nothing ran)."""
    import shutil

    from evalrun import tiny
    from evalrun.metrics.features import build_extractor

    marker = tmp_path / "pwned"
    folder = tmp_path / "clip"
    shutil.copytree(tiny.resolve("evalrun/tiny-clip"), folder)
    (folder / "model.safetensors").unlink()
    torch.save({"payload": Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(EvalrunError, match=r"a pickle that would run code .* use a safetensors copy") as err:
        build_extractor("clip", path=str(folder))
    assert "\n" not in str(err.value) and not marker.exists()


@needs_open_clip
def test_an_hps_config_naming_a_transformers_tower_is_refused_before_any_code_can_run(twins, tmp_path, monkeypatch):
    """open_clip builds a text tower named by hf_model_name with AutoConfig, which asks on stdin whether to run
    the code of a folder with auto_map (a 'y' ran it)."""
    import io
    import json

    marker = tmp_path / "pwned"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "modeling_evil.EvilConfig"}}))
    (hf / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    folder = tmp_path / "hps"
    folder.mkdir()
    shutil_state = (twins["hps"] / hps_mod.FILENAME).read_bytes()
    (folder / hps_mod.FILENAME).write_bytes(shutil_state)
    config = json.loads((twins["hps"] / hps_mod.CONFIG_NAME).read_text())
    config["model_cfg"]["text_cfg"].update(hf_model_name=str(hf), hf_tokenizer_name=str(hf), hf_model_pretrained=False)
    (folder / hps_mod.CONFIG_NAME).write_text(json.dumps(config))
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # what a user at the prompt would have answered
    with pytest.raises(EvalrunError, match=r"names a transformers model \(text_cfg.hf_model_name, "
                                           r"text_cfg.hf_tokenizer_name\): loading it may run code"):
        hps_mod.load_hps(str(folder))
    assert not marker.exists()


@needs_open_clip
def test_hps_accepts_safetensors(hps, twins, images, tmp_path):
    from safetensors.torch import save_file

    state = torch.load(twins["hps"] / hps_mod.FILENAME, weights_only=True)["state_dict"]
    folder = tmp_path / "st"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "HPS_v2.1_compressed.safetensors")
    (folder / hps_mod.CONFIG_NAME).write_text((twins["hps"] / hps_mod.CONFIG_NAME).read_text())
    other = hps_mod.load_hps(str(folder))
    torch.testing.assert_close(other.score(images, PROMPTS), hps.score(images, PROMPTS))
    assert other.info()["weights_sha256"].keys() == {"HPS_v2.1_compressed.safetensors"}


@needs_open_clip
def test_hps_weights_of_another_width_are_one_line_naming_the_settings(twins, tmp_path):
    """strict=False forgives missing names, not other shapes: torch raises, evalrun answers in one line."""
    config = json.loads((twins["hps"] / hps_mod.CONFIG_NAME).read_text())
    config["model_cfg"]["embed_dim"] *= 2  # the same layers, a wider projection: every name fits, two shapes do not
    other = tmp_path / "arch"
    other.mkdir()
    (other / hps_mod.CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(EvalrunError, match=r"does not fit open_clip .*size mismatch.*set metrics.hps.architecture to "
                                           r"the checkpoint's .* or metrics.hps.checkpoint to a checkpoint of") as err:
        hps_mod.load_hps(str(twins["hps"]), architecture=str(other))
    assert "\n" not in str(err.value)


def test_inputs_are_checked(image_reward, images):
    with pytest.raises(ValueError, match="uint8"):
        image_reward.score(images.float(), PROMPTS)
    with pytest.raises(ValueError, match="one prompt per image"):
        image_reward.score(images, PROMPTS[:2])

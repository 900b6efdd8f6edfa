"""Class-conditional generation (DiT): ImageNet class words, N random classes, or all classes.

Class words are mapped to label ids with the pipeline's own ``get_label_ids`` once it is
loaded; random/all classes are ids from the start. A class's prompt id is its class id, so
a class gets the same noise whichever subset of classes a run uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evalrun.errors import ConfigError, EvalrunError, true_or_false
from evalrun.tasks.base import Task
from evalrun.tasks.values import non_negative_number


def class_records(cfg: Any) -> list[dict[str, Any]]:
    """Prompt source ``classes``: words now; random/all classes as ids (words looked up once loaded)."""
    from omegaconf import OmegaConf

    words = cfg.get("words")
    words = OmegaConf.to_container(words) if OmegaConf.is_config(words) else words
    words = [words] if isinstance(words, str) else words  # prompts.words=volcano: one class
    n_random, all_classes = cfg.get("random"), bool(true_or_false("prompts.all", cfg.get("all")))
    if words and (n_random is not None or all_classes):
        chosen = f"prompts.random={n_random}" if n_random is not None else "prompts.all=true"
        raise ConfigError(f"prompts=classes: {chosen} and prompts.words={words} both choose the classes; add "
                          f"prompts.words=null to use {chosen} (the set lists default words)")
    if sum([bool(words), n_random is not None, all_classes]) != 1:
        raise ConfigError("prompts=classes needs exactly one of prompts.words=[...], prompts.random=N or prompts.all=true")
    if words:  # prompt_id becomes the class id once the pipeline maps the word
        return [{"prompt_id": i, "prompt": str(w), "category": None, "challenge": None} for i, w in enumerate(words)]
    num_classes = int(cfg.get("num_classes") or 1000)
    if all_classes:
        ids = list(range(num_classes))
    else:
        if isinstance(n_random, bool) or not isinstance(n_random, int) or not 1 <= n_random <= num_classes:
            raise ConfigError(f"prompts.random must be an integer in 1..{num_classes}, got {n_random!r}")
        ids = sorted(np.random.default_rng(int(cfg.get("random_seed") or 0)).choice(num_classes, n_random, replace=False))
    return [{"prompt_id": int(i), "prompt": None, "class_id": int(i), "category": None, "challenge": None} for i in ids]


def check_distinct_classes(records: list[dict[str, Any]]) -> None:
    """Words of one class (synonyms, or a word listed twice) would make the same samples twice (a class's noise
    comes from its id), counted by FID/IS/diversity as independent images: refused, naming them."""
    seen: dict[int, str] = {}
    for rec in records:
        word = str(rec.get("prompt"))
        if rec["class_id"] in seen:
            raise EvalrunError(f"prompts.words: {seen[rec['class_id']]!r} and {word!r} are both class {rec['class_id']}, "
                               f"so their images would be the same samples twice; list each class once")
        seen[rec["class_id"]] = word


def _id2label(cfg: Any) -> dict[str, str]:
    """The checkpoint's id2label (model_index.json), which the pipeline keeps only as sorted word -> id."""
    from evalrun.pipelines import model_index

    return dict(model_index(cfg.model).get("id2label") or {})


def _words_of_several_classes(id2label: dict[str, str]) -> dict[str, list[int]]:
    """Words that id2label gives to more than one class (ImageNet: crane the bird and the machine):
    the pipeline's get_label_ids keeps whichever it saw last."""
    found: dict[str, list[int]] = {}
    for key, value in id2label.items():
        for word in {w.strip() for w in str(value).split(",")}:
            found.setdefault(word, []).append(int(key))
    return {w: sorted(ids) for w, ids in found.items() if len(ids) > 1}


class ClassToImage(Task):
    name = "class2img"
    knobs = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale"}
    prompt_sources = ("classes",)
    prompt_hint = "ImageNet classes (prompts=classes)"

    def validate(self, cfg: Any) -> None:
        super().validate(cfg)
        non_negative_number(cfg, "guidance_scale")

    def prepare(self, pipeline: Any, records: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        """Map words to ids with the loaded pipeline's ``get_label_ids`` and ids back to a readable word."""
        pipe = pipeline.get()
        labels: dict[str, int] = getattr(pipe, "labels", {}) or {}
        # A class's first word as id2label lists it ("tench, Tinca tinca"): the pipeline's labels are sorted
        # alphabetically, where capitals (the Latin names) come first.
        id2label = _id2label(cfg)
        first_word = {int(k): str(v).split(",")[0].strip() for k, v in id2label.items()}
        for word, idx in labels.items():
            first_word.setdefault(idx, word)
        ambiguous = _words_of_several_classes(id2label)
        config = getattr(getattr(pipe, "transformer", None), "config", None)
        n_classes = config.get("num_embeds_ada_norm") if config is not None else None
        out = []
        for rec in records:
            rec = dict(rec)
            if rec.get("class_id") is None:
                if str(rec["prompt"]).strip() in ambiguous:
                    ids = ambiguous[str(rec["prompt"]).strip()]
                    raise EvalrunError(f"prompts.words: {rec['prompt']!r} names {len(ids)} classes of this model "
                                       f"({', '.join(f'{i}: {id2label.get(str(i))!r}' for i in ids)}); list another "
                                       f"of the class's words, or use its id with prompts.words=null")
                try:
                    rec["class_id"] = int(pipe.get_label_ids([rec["prompt"]])[0])
                    # Like random/all classes: the class id is the prompt id, so a class keeps its
                    # noise (and per-image pairing) whatever other words a run lists.
                    rec["prompt_id"] = rec["class_id"]
                except ValueError:
                    close = [w for w in labels if rec["prompt"].lower() in w.lower()][:10]
                    raise EvalrunError(f"prompts.words: {rec['prompt']!r} is not a class word of this model"
                                       f"{'; did you mean: ' + ', '.join(close) if close else ''} "
                                       f"(the words are those of the checkpoint's id2label)") from None
            if n_classes is not None and not 0 <= rec["class_id"] < n_classes:  # DiT's id n_classes is its null class
                raise EvalrunError(f"class id {rec['class_id']} is not a class of this model ({n_classes} classes, "
                                   f"0..{n_classes - 1}); set prompts.num_classes={n_classes}")
            if rec.get("prompt") is None:
                rec["prompt"] = first_word.get(rec["class_id"], f"class {rec['class_id']}")
            out.append(rec)
        check_distinct_classes(out)
        return out

    def inputs(self, pipe: Any, jobs: list) -> dict[str, Any]:
        return {"class_labels": [int(j.record["class_id"]) for j in jobs]}

"""How many prompts each of a pipeline's tokenizers truncates, at the length the pipeline uses.

Counted with the tokenizers alone, loaded from the model's folder (no weights), so a run whose
images are all reused records it too (``run.json`` provenance ``text_truncation``). CLIP tokenizers
cut at their ``model_max_length`` (77); T5 and LLM tokenizers at ``max_sequence_length`` (the run's,
else the pipeline's default), counted on the text as the pipeline builds it (diffusers 0.42):

- Sana prepends its complex human instruction and widens the limit by its length (less 2);
- Qwen-Image wraps the prompt in a template whose first tokens it drops, then keeps
  ``min(1024, max_sequence_length)``; Qwen-Image-Edit also puts the input image's tokens there,
  which this count leaves out (a lower bound);
- Z-Image applies its chat template, Lumina 2 prepends its system prompt, FLUX.2 its system
  message (through its tokenizer component, a Pixtral processor, as the pipeline does), all inside
  the limit.

Special tokens count as the pipeline's tokenizer adds them. Negative prompts are not counted.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from typing import Any

from evalrun.errors import first_line

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _tokenizers(source: str, revision: str | None) -> tuple[tuple[str, Any], ...]:
    """The ``tokenizer*`` components of a saved pipeline, each loaded with the class model_index.json names:
    a transformers tokenizer or processor class only (FLUX.2's tokenizer is a PixtralProcessor, whose
    ``tokenizer`` tokenizes), never code the checkpoint brings (a module named there is not imported; a
    config's ``auto_map`` is refused: ``trust_remote_code=False``)."""
    import transformers
    from diffusers import DiffusionPipeline

    kwargs = {"revision": revision} if revision else {}
    index = DiffusionPipeline.load_config(source, **kwargs)
    found = []
    for name in sorted(k for k in index if k.startswith("tokenizer")):
        library, cls_name = index[name]
        if library is None or cls_name is None:
            continue
        cls = getattr(transformers, str(cls_name), None) if library == "transformers" else None
        if not (isinstance(cls, type) and issubclass(cls, (transformers.PreTrainedTokenizerBase,
                                                           transformers.ProcessorMixin))):
            raise ValueError(f"model_index.json names {library}.{cls_name} for {name}, not a transformers tokenizer "
                             f"or processor")
        loaded = cls.from_pretrained(source, subfolder=name, trust_remote_code=False, **kwargs)
        if not isinstance(getattr(loaded, "tokenizer", loaded), transformers.PreTrainedTokenizerBase):
            raise ValueError(f"{name} ({cls_name}) holds no transformers tokenizer")
        found.append((name, loaded))
    return tuple(found)


def _bare(pipeline_cls: type):
    """An instance without components, for the prompt templates pipelines set in ``__init__``."""
    params = [p for p in inspect.signature(pipeline_cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    try:
        return pipeline_cls(**{p: None for p in params})
    except Exception:  # noqa: BLE001 - a pipeline that needs real components has no template to read
        return None


def _lengths(tokenizer, texts: list[str]) -> list[int]:
    return [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


def _count(pipeline_cls: type, component, prompts: list[str], max_sequence_length: int | None) -> dict[str, int]:
    """``{"max_tokens": L, "truncated": n}`` for one tokenizer component, a tokenizer or a processor
    (see the module docstring)."""
    name = pipeline_cls.__name__
    tokenizer = getattr(component, "tokenizer", component)  # a processor's own text tokenizer
    if type(tokenizer).__name__.startswith("CLIPTokenizer"):
        limit = int(tokenizer.model_max_length)
        return {"max_tokens": limit, "truncated": sum(n > limit for n in _lengths(tokenizer, prompts))}
    limit = max_sequence_length
    if limit is None and 0 < int(getattr(tokenizer, "model_max_length", 0)) < 100_000:
        limit = int(tokenizer.model_max_length)  # a pipeline without the knob truncates at the tokenizer's own
    if limit is None:
        raise ValueError(f"{name} has no max_sequence_length and the tokenizer sets no usable model_max_length")
    bare = _bare(pipeline_cls)
    offset, budget = 0, limit
    texts = list(prompts)
    if name.startswith("Sana"):
        default = inspect.signature(pipeline_cls.__call__).parameters.get("complex_human_instruction")
        instruction = "\n".join(default.default) if default is not None and default.default else ""
        if instruction:
            texts = [instruction + p for p in prompts]
            budget = len(tokenizer.encode(instruction)) + limit - 2
    elif name.startswith("QwenImage") and bare is not None:
        texts = [bare.prompt_template_encode.format(p) for p in prompts]
        offset = bare.prompt_template_encode_start_idx
        budget = min(getattr(bare, "tokenizer_max_length", limit), limit)
    elif name == "ZImagePipeline":
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True, enable_thinking=True) for p in prompts]
    elif name == "Lumina2Pipeline" and bare is not None:
        texts = [bare.system_prompt + " <Prompt Start> " + p for p in prompts]
    elif name == "Flux2Pipeline":  # the component's own apply_chat_template (the processor's), as the pipeline calls it
        module = importlib.import_module(pipeline_cls.__module__)
        conversations = module.format_input(prompts=list(prompts), system_message=bare.system_message
                                            if bare is not None else module.SYSTEM_MESSAGE)
        ids = component.apply_chat_template(conversations, add_generation_prompt=False, tokenize=True,
                                            return_dict=True, return_tensors=None)["input_ids"]
        return {"max_tokens": limit, "truncated": sum(len(n) > limit for n in ids)}
    return {"max_tokens": budget, "truncated": sum(n - offset > budget for n in _lengths(tokenizer, texts))}


@functools.lru_cache(maxsize=64)  # a sweep's jobs count the same prompts with the same (cached) tokenizers
def _counted(pipeline_cls: type, tokenizer, prompts: tuple[str, ...], max_sequence_length: int | None) -> dict[str, int]:
    return _count(pipeline_cls, tokenizer, list(prompts), max_sequence_length)


def text_truncation(model: Any, pipeline_cls: type, prompts: list[str], max_sequence_length: int | None) -> dict:
    """Per tokenizer component: the token limit the pipeline applies and how many ``prompts`` exceed it.

    Never fails a run: a tokenizer that cannot be loaded or read is reported as ``{"error": ...}``.
    """
    import evalrun.tiny as tiny

    if max_sequence_length is None:
        default = inspect.signature(pipeline_cls.__call__).parameters.get("max_sequence_length")
        max_sequence_length = default.default if default is not None else None
    unique = sorted(set(prompts))
    try:
        tokenizers = _tokenizers(str(tiny.resolve(model.path)), None if model.get("revision") is None
                                 else str(model.revision))
    except Exception as exc:  # noqa: BLE001 - provenance only
        log.warning("could not load the tokenizers to count truncated prompts: %s", first_line(exc))
        return {"error": first_line(exc)}
    out: dict[str, Any] = {}
    for name, tokenizer in tokenizers:
        try:
            out[name] = {**_counted(pipeline_cls, tokenizer, tuple(unique), max_sequence_length), "prompts": len(unique)}
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": first_line(exc)}
        if out[name].get("truncated"):
            log.warning("%s: %d of %d prompts are longer than %d tokens and are truncated", name,
                        out[name]["truncated"], len(unique), out[name]["max_tokens"])
    return out

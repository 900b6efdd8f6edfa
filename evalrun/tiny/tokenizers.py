"""Tokenizers for the tiny twins, written in code (no hub, no sentencepiece).

Each ``write_*`` function saves a small tokenizer of the real model's class into a folder, so
that the pipeline's ``from_pretrained`` loads it with the same class and the same call
conventions (special tokens, padding side, BOS/EOS, chat template) as the real checkpoint.
Vocabularies are character level (or byte level for byte-level BPE families), so any prompt
tokenizes and token counts are close to character counts: a prompt of N characters is about
N tokens, which makes truncation at ``max_sequence_length`` easy to provoke in tests.

Built with the transformers 5 tokenizer classes, whose constructors take ``vocab``/``merges``.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

# Printable ASCII without whitespace: the character inventory of every tiny vocabulary.
CHARS = sorted(set(string.printable) - set(string.whitespace))


# ----------------------------------------------------------------------------- CLIP
def write_clip_tokenizer(directory: Path, model_max_length: int = 77, pad_token: str = "<|endoftext|>") -> int:
    """Character-level CLIP BPE (no merges). Returns the vocabulary size.

    ``pad_token="!"`` gives the layout of SDXL's and SD3's second (OpenCLIP bigG) tokenizer,
    which pads with ``!`` instead of the end token.
    """
    from transformers import CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>"] + CHARS + [c + "</w>" for c in CHARS]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": model_max_length, "pad_token": pad_token, "tokenizer_class": "CLIPTokenizer",
         "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    tok = CLIPTokenizer.from_pretrained(directory)
    tok.save_pretrained(directory)
    return len(tok)


# ----------------------------------------------------------------------------- T5 (Unigram)
def write_t5_tokenizer(directory: Path, model_max_length: int = 512) -> int:
    """Character-level T5 Unigram tokenizer: ``<pad>``=0, ``</s>``=1, ``<unk>``=2, EOS appended."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)] + [(c, -3.0) for c in CHARS]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
    tok.save_pretrained(directory)
    return len(tok)


# ----------------------------------------------------------------------------- Gemma (byte-fallback BPE)
def write_gemma_tokenizer(directory: Path, model_max_length: int = 8192, padding_side: str = "left") -> int:
    """Character-level Gemma tokenizer with byte fallback: ``<pad>``=0, ``<eos>``=1, ``<bos>``=2 (prepended)."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for c in CHARS:
        vocab[c] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    extra = ["<start_of_turn>", "<end_of_turn>"]
    tok = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length, add_bos_token=True,
                         add_eos_token=False, padding_side=padding_side, additional_special_tokens=extra)
    tok.save_pretrained(directory)
    return len(tok)


# ----------------------------------------------------------------------------- Qwen2 (byte-level BPE)
QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<think>", "</think>",
]

# Qwen3's chat template reduced to what a text-to-image pipeline uses: one or more plain
# messages, the generation prompt, and the empty thinking block when enable_thinking=False.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, used by every byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(
        range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _byte_level_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte alphabet plus left-to-right merges that make each of ``words`` (pre-tokens) one token."""
    b2u = _bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(sorted(b2u))}
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = "".join(b2u[b] for b in word.encode("utf-8"))
        for i in range(1, len(symbols)):
            left, right = symbols[:i], symbols[i]
            if symbols[: i + 1] not in vocab:
                vocab[symbols[: i + 1]] = len(vocab)
                merges.append((left, right))
    return vocab, merges


def pretokens(text: str) -> list[str]:
    """Qwen2's pre-tokenization of ``text`` (special tokens removed first)."""
    from tokenizers import Regex, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    split = pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False)
    pattern = "|".join(re.escape(special) for special in QWEN_SPECIALS)
    return [piece for part in re.split(pattern, text) for piece, _ in split.pre_tokenize_str(part)]


def write_qwen2_tokenizer(directory: Path, templates: tuple[str, ...] = (), model_max_length: int = 32768,
                          chat_template: str | None = None) -> int:
    """Byte-level Qwen2 BPE whose merges turn every word of ``templates`` into one token.

    Qwen pipelines drop the first N tokens of a fixed prompt template (``drop_idx``, 34 for
    Qwen-Image, 64 for Qwen-Image-Edit). Making each template word one token, as in the real
    vocabulary, makes the tiny tokenizer split the template into the same number of tokens, so
    the pipeline drops exactly the template and keeps the prompt. Any other text is byte level.
    """
    from transformers import Qwen2Tokenizer

    words: list[str] = []
    for template in templates:
        for piece in pretokens(template.replace("{}", "")):
            if piece not in words:
                words.append(piece)
    # Longer words first: their prefix merges then outrank the pairs inside shorter words
    # (" user" must become one token although "user" alone is a template word too).
    vocab, merges = _byte_level_bpe(sorted(words, key=len, reverse=True))
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length,
                         errors="replace", unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", additional_special_tokens=QWEN_SPECIALS[1:])
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    if chat_template is not None:
        tok.chat_template = chat_template
    tok.save_pretrained(directory)
    return len(tok)


# ----------------------------------------------------------------------------- generic byte-level BPE
def write_byte_bpe_tokenizer(directory: Path, specials: list[str], tokenizer_class: str = "PreTrainedTokenizerFast",
                             model_max_length: int = 8192, padding_side: str = "left", **special_tokens: str) -> int:
    """A byte-level BPE ``tokenizers.Tokenizer`` saved as tokenizer.json, loaded through ``tokenizer_class``.

    For families whose real tokenizer is a plain ``PreTrainedTokenizerFast`` (GLM-4 for CogView4).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _byte_level_bpe([])
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=model_max_length,
                                  padding_side=padding_side, **special_tokens)
    tok.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in special_tokens.values()]})
    tok.save_pretrained(directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = tokenizer_class
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(tok)

"""Tiny CogView4 (``CogView4Pipeline``): DiT with GLM-4 text encoder, 16-channel VAE."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.parts import kl_vae
from evalrun.tiny.tokenizers import write_byte_bpe_tokenizer

# THUDM/CogView4-6B: scripts/convert_cogview4_to_diffusers.py builds exactly this scheduler
# (linear time shift, mu = sqrt(image_seq_len / 256) * 0.75 + 0.25, computed by the pipeline).
SCHEDULER_CONFIG = {"base_shift": 0.25, "max_shift": 0.75, "base_image_seq_len": 256, "use_dynamic_shifting": True,
                    "time_shift_type": "linear"}
# Same script: 16 latent channels, scaling 1.0, shift 0.0, no quant convs.
VAE = {"latent_channels": 16, "scaling_factor": 1.0, "shift_factor": 0.0}


def build_tiny_cogview4(target: Path) -> None:
    """CogView4 layout at toy width. The real tokenizer is GLM-4's ``PreTrainedTokenizerFast``
    (left padding, ``[gMASK]<sop>`` prefix); here a byte-level BPE with those special tokens.
    The pipeline pads prompts to the longest in the batch (then to a multiple of 16) and runs the
    encoder without an attention mask, so pad tokens enter the embeddings."""
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from tokenizers import processors
    from transformers import AutoTokenizer, GlmConfig, GlmModel

    write_byte_bpe_tokenizer(target / "tokenizer", ["<|endoftext|>", "[gMASK]", "<sop>", "<|user|>", "<|assistant|>"],
                             pad_token="<|endoftext|>", eos_token="<|endoftext|>", padding_side="left")
    tokenizer = AutoTokenizer.from_pretrained(target / "tokenizer")
    gmask, sop = tokenizer.convert_tokens_to_ids(["[gMASK]", "<sop>"])
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[gMASK] <sop> $A", pair="[gMASK] <sop> $A $B", special_tokens=[("[gMASK]", gmask), ("<sop>", sop)])
    config = GlmConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=8, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    text_encoder = GlmModel(config).eval()
    torch.manual_seed(0)
    transformer = CogView4Transformer2DModel(
        patch_size=2, in_channels=VAE["latent_channels"], out_channels=VAE["latent_channels"], num_layers=2,
        attention_head_dim=4, num_attention_heads=4, text_embed_dim=32, time_embed_dim=8, condition_dim=4,
    )
    pipe = CogView4Pipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=kl_vae(**VAE, quant_conv=False),
                            transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG))
    pipe.save_pretrained(target)

"""Tiny FLUX.2 [dev] (``Flux2Pipeline``): MMDiT with guidance embedding, Mistral-3 text encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from evalrun.tiny.flux import DEV_SCHEDULER_CONFIG
from evalrun.tiny.tokenizers import write_byte_bpe_tokenizer

# black-forest-labs/FLUX.2-dev: scripts/convert_flux2_to_diffusers.py copies FLUX.1-dev's scheduler
# config. The pipeline computes its own mu (compute_empirical_mu(seq_len, steps)).
SCHEDULER_CONFIG = DEV_SCHEDULER_CONFIG

MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]",
                    "<pad>", "[IMG_BREAK]", "[IMG_END]"]
# Mistral-Small-3.1's chat template reduced to what Flux2Pipeline sends: a system message and user
# messages whose content is a list of text (and image) parts.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- set ns = namespace(text='') %}"
    "{%- if message['content'] is string %}{%- set ns.text = message['content'] %}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{%- set ns.text = ns.text + part['text'] %}"
    "{%- elif part['type'] == 'image' %}{%- set ns.text = ns.text + '[IMG]' %}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + ns.text + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' %}{{- '[INST]' + ns.text + '[/INST]' }}"
    "{%- else %}{{- ns.text + eos_token }}{%- endif %}"
    "{%- endfor %}"
)


def build_tiny_flux2(target: Path) -> None:
    """FLUX.2 layout at toy width: 32-channel 8x VAE with batch-norm latent statistics, 2x2
    patchified latents (sizes multiples of 16), a 30-layer Mistral-3 text model whose hidden states
    10, 20 and 30 are stacked (the pipeline default ``text_encoder_out_layers``), a Pixtral
    processor with a chat template that prepends the pipeline's system message."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel
    from transformers import (AutoTokenizer, Mistral3Config, Mistral3ForConditionalGeneration, PixtralImageProcessor,
                              PixtralProcessor)

    write_byte_bpe_tokenizer(target / "tokenizer", MISTRAL_SPECIALS, tokenizer_class="LlamaTokenizerFast",
                             model_max_length=131072, padding_side="left", bos_token="<s>", eos_token="</s>",
                             unk_token="<unk>", pad_token="<pad>")
    tokenizer = AutoTokenizer.from_pretrained(target / "tokenizer")
    ids = tokenizer.convert_tokens_to_ids
    hidden = 16
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tokenizer), "hidden_size": hidden,
                     "intermediate_size": 32, "max_position_embeddings": 2048, "num_attention_heads": 4,
                     "num_hidden_layers": 30, "num_key_value_heads": 2, "head_dim": 4, "rms_norm_eps": 1e-5,
                     "rope_theta": 1000000000.0, "sliding_window": None, "bos_token_id": ids("<s>"),
                     "eos_token_id": ids("</s>"), "pad_token_id": ids("<pad>")},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 4,
                       "intermediate_size": 32, "image_size": 64, "patch_size": 16, "num_channels": 3, "head_dim": 4},
        image_token_index=ids("[IMG]"), spatial_merge_size=1, vision_feature_layer=-1,
        bos_token_id=ids("<s>"), eos_token_id=ids("</s>"), pad_token_id=ids("<pad>"),
    )
    torch.manual_seed(0)
    text_encoder = Mistral3ForConditionalGeneration(config).eval()
    processor = PixtralProcessor(
        image_processor=PixtralImageProcessor(size={"longest_edge": 64}, patch_size={"height": 16, "width": 16}),
        tokenizer=tokenizer, patch_size=16, spatial_merge_size=1, chat_template=CHAT_TEMPLATE)
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=4 * 32, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=3 * hidden, timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
    )
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8,) * 4, layers_per_block=1,
        latent_channels=32, norm_num_groups=4, sample_size=64, use_quant_conv=True, use_post_quant_conv=True,
    ).eval()
    pipe = Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG), vae=vae,
                         text_encoder=text_encoder, tokenizer=processor, transformer=transformer)
    pipe.save_pretrained(target)

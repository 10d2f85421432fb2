"""Tiny random vision-language models (no download) and their batches: text only, or with random
pixel tensors of the shape each model's processor would give, the image tokens' labels -100."""

from __future__ import annotations

import pytest
import torch

from tests.integrations._tiny_models import TEXT_CONFIG

transformers = pytest.importorskip("transformers")

VOCAB = 120
#: the image placeholder token, and the ids around it (inside the vocabulary, above the text ids)
IMAGE, START, END = 100, 101, 102
#: the text model: the causal LMs' tiny shape (head_dim given where the config takes it)
_TEXT = {k: v for k, v in TEXT_CONFIG.items() if k != "head_dim"} | {"vocab_size": VOCAB}
#: images of 28 x 28 pixels in patches of 14: 4 patches, 4 image tokens per image
_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
)


def _gemma3():
    config = transformers.Gemma3Config(
        text_config=transformers.Gemma3TextConfig(**_TEXT, head_dim=8),
        vision_config=transformers.SiglipVisionConfig(**_VISION),
        mm_tokens_per_image=4,
        image_token_index=IMAGE,
        boi_token_index=START,
        eoi_token_index=END,
    )
    return transformers.Gemma3ForConditionalGeneration(config)


def _qwen_vl(name: str):
    # 4 x 4 patches of 14 pixels (2 frames each), merged 2 x 2: 4 image tokens per image
    vision = dict(depth=1, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    if name == "Qwen2_5_VL":
        vision.update(out_hidden_size=32, intermediate_size=64, window_size=56, fullatt_block_indexes=[0])
    else:
        vision.update(embed_dim=32)
    text = {**_TEXT, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}}
    config = getattr(transformers, f"{name}Config")(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE,
        video_token_id=103,
        vision_start_token_id=START,
        vision_end_token_id=END,
    )
    return getattr(transformers, f"{name}ForConditionalGeneration")(config)


def _llava():
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(**{**_VISION, "num_hidden_layers": 2}, projection_dim=32),
        text_config=transformers.LlamaConfig(**_TEXT, head_dim=8),
        image_token_index=IMAGE,
        image_seq_length=4,
        vision_feature_layer=-1,
    )
    return transformers.LlavaForConditionalGeneration(config)


def _mllama():
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig

    vision = MllamaVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=2,
        intermediate_size=64,
        vision_output_dim=64,
        image_size=28,
        patch_size=14,
        max_num_tiles=2,
        intermediate_layers_indices=[0],
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
    )
    text = MllamaTextConfig(**_TEXT, cross_attention_layers=[1])
    return transformers.MllamaForConditionalGeneration(
        transformers.MllamaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE)
    )


VLMS = {
    "gemma3": _gemma3,
    "qwen2_vl": lambda: _qwen_vl("Qwen2VL"),
    "qwen2_5_vl": lambda: _qwen_vl("Qwen2_5_VL"),
    "llava": _llava,
    "mllama": _mllama,
}


def make_vlm(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = VLMS[name]().float()
    with torch.no_grad():  # tiny random logits are ~0.1: make them O(1), so the loss's gradient matters
        model.lm_head.weight.mul_(20.0)
        if name == "gemma3":  # initialised to zeros: every image would project to the same features
            torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.3)
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith(
                ("cross_attn_attn_gate", "cross_attn_mlp_gate")
            ):  # Mllama: 0 shuts the image out
                parameter.fill_(1.0)
    return model


def vlm_batch(name: str, images: bool, seed: int = 0, batch_size: int = 2, length: int = 14) -> dict[str, torch.Tensor]:
    """Left padding, a prompt masked by -100; with ``images`` one image per sequence at positions
    5..8 (Mllama: one ``<|image|>`` token at 5, seen through cross-attention), its tokens -100."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, IMAGE, (batch_size, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, :3] = 0
    ids[mask == 0] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[0, :4] = -100
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if not images:
        return inputs
    if name == "mllama":
        ids[:, 5] = IMAGE
        labels[:, 5] = -100
        cross = torch.zeros(batch_size, length, 1, 2, dtype=torch.long)
        cross[:, 5:] = 1  # the text after the image sees both of its tiles
        return {
            **inputs,
            "pixel_values": torch.randn(batch_size, 1, 2, 3, 28, 28, generator=g),  # 1 image of 2 tiles
            "aspect_ratio_ids": torch.full((batch_size, 1), 2),  # the (1, 2) tiling
            "aspect_ratio_mask": torch.ones(batch_size, 1, 2, dtype=torch.long),
            "cross_attention_mask": cross,
        }
    ids[:, 5:9] = IMAGE
    labels[:, 5:9] = -100
    image_tokens = torch.zeros_like(ids)
    image_tokens[:, 5:9] = 1
    if name in ("gemma3", "llava"):
        inputs["pixel_values"] = torch.randn(batch_size, 3, 28, 28, generator=g)
        if name == "gemma3":
            inputs["token_type_ids"] = image_tokens  # bidirectional attention over the image
        return inputs
    ids[:, 4], ids[:, 9] = START, END
    labels[:, 4], labels[:, 9] = -100, -100
    return {
        **inputs,
        "pixel_values": torch.randn(batch_size * 16, 3 * 2 * 14 * 14, generator=g),  # 16 patches per image
        "image_grid_thw": torch.tensor([[1, 4, 4]] * batch_size),
        "mm_token_type_ids": image_tokens,
    }

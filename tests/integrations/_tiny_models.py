"""Tiny random causal LMs of each family (no download), and the stock-vs-patched comparison."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 97
#: shared by every family: 2 layers, 4 heads of 8, 2 key/value heads
TEXT_CONFIG = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)

#: family -> (config class, causal-LM class, options). The options make each family's own step
#: large enough to matter (see test_each_family_step_changes_the_stock_loss): a soft-cap of 2
#: where tiny random logits never reach 30, a logit scale of 1/4, an aux coefficient of 0.5.
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"final_logit_softcapping": 0.5}),
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        {"num_local_experts": 4, "num_experts_per_tok": 2, "output_router_logits": True, "router_aux_loss_coef": 0.5},
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "granite": ("GraniteConfig", "GraniteForCausalLM", {"logits_scaling": 0.25}),
    "cohere": ("CohereConfig", "CohereForCausalLM", {"logit_scale": 4.0}),
    # more families, read from their forward's source like the ones above: lm_head with a bias
    # (phi), a plain one (qwen3), another mixture of experts (qwen3_moe), another soft-cap (gemma3)
    "phi": ("PhiConfig", "PhiForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        {
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 16,
            "output_router_logits": True,
            "router_aux_loss_coef": 0.5,
        },
    ),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"final_logit_softcapping": 0.5}),
    # a logit scale and a router auxiliary loss together
    "granitemoe": (
        "GraniteMoeConfig",
        "GraniteMoeForCausalLM",
        {
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "output_router_logits": True,
            "router_aux_loss_coef": 0.5,
            "logits_scaling": 0.25,
        },
    ),
}


def make_config(family: str, **overrides: object):
    config_name, _, options = FAMILIES[family]
    return getattr(transformers, config_name)(**{**TEXT_CONFIG, **options, **overrides})


def make_model(family: str, seed: int = 0, **overrides: object) -> torch.nn.Module:
    _, model_name, _ = FAMILIES[family]
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(make_config(family, **overrides)).float()
    with torch.no_grad():  # tiny random logits are ~0.1: make them O(1), so every step matters
        model.lm_head.weight.mul_(20.0)
    return model


def batch(seed: int = 0, batch_size: int = 3, length: int = 11) -> dict[str, torch.Tensor]:
    """Left-padded input ids with an attention mask, and labels with -100 on padding and on a prompt."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch_size, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, : length // 3] = 0  # left padding
    ids[mask == 0] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[0, : length // 3] = -100  # a prompt
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def stock_and_patched(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    from losskit.integrations.transformers import patch

    return model, patch(copy.deepcopy(model))


def assert_same_gradients(
    stock: torch.nn.Module,
    patched: torch.nn.Module,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    of_largest: float | None = None,
):
    """Every parameter has a gradient in both, and they agree (by name). With ``of_largest`` the
    absolute tolerance is (at least) that fraction of the tensor's largest stock gradient (for deep models,
    where float32 rounding of the upstream gradient accumulates into single elements)."""
    theirs = dict(patched.named_parameters())
    checked = 0
    for name, p in stock.named_parameters():
        if not p.requires_grad:
            continue
        q = theirs[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            tol = atol if of_largest is None else max(atol, of_largest * float(p.grad.abs().max()))
            torch.testing.assert_close(q.grad, p.grad, rtol=rtol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
            checked += 1
    assert checked > 0


def token_rows(n: int, length: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Sequences with prompts of random lengths masked by -100: the micro-batches of one
    accumulation step count different numbers of tokens, so ``num_items_in_batch`` matters."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(3, VOCAB, (length,), generator=g)
        labels = ids.clone()
        labels[: int(torch.randint(0, length - 2, (1,), generator=g))] = -100
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def trainer_args(output_dir: object, **overrides: object) -> dict[str, object]:
    """Keyword arguments of a short CPU training run (``TrainingArguments`` or TRL's configs):
    micro-batches of 2, gradient accumulation 2, 3 steps at lr 1e-2, logging every step, nothing
    saved or reported."""
    return {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "max_steps": 3,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "seed": 0,
        "disable_tqdm": True,
        **overrides,
    }


def logged(trainer, key: str = "loss") -> list[float]:
    """The values of ``key`` the Trainer logged, step by step."""
    return [entry[key] for entry in trainer.state.log_history if key in entry]

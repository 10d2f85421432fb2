"""Fine-tune a tiny random Llama with ``transformers.Trainer``, stock and patched with losskit's
fused linear + cross-entropy, and print both loss curves, evaluation metrics and the peak memory
of each.

    .venv/bin/python examples/finetune_hf_trainer.py            # ~40 s on 2 CPU cores
    .venv/bin/python examples/finetune_hf_trainer.py --steps 3 --vocab 2000 --label-smoothing 0.1

The one line that matters is ``patch(trainer)`` (or ``patch(model)`` when the Trainer computes
no loss of its own): with labels, the patched model never builds the ``batch x sequence x
vocabulary`` logits, and its loss and gradients are the stock model's, so the two curves agree
to float32 rounding -- with the Trainer's label smoothing too. Both runs start from the same
random initialization and see the same batches; gradient accumulation (2 micro-batches per step,
with different numbers of masked prompt tokens) exercises the Trainer's ``num_items_in_batch``.
Evaluation reports token accuracy and perplexity: the stock run from its logits, the patched run
from the token statistics its outputs carry (``token_metrics``), without logits.

The data is a synthetic Markov chain over 1,000 of the vocabulary's tokens (each has 4 likely
successors), so the loss falls from about ln(vocab) as the model learns which tokens occur. Each run is in a fresh
process, so its peak resident memory (``VmHWM``) is its own; the numbers are the peak above the
memory in use when training starts (model, optimizer state and gradients are the same in both).
The two runs go side by side, so their times say nothing; their losses and memory do.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch


def markov_rows(n: int, length: int, vocab: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``n`` sequences of a fixed random Markov chain over the first ``min(vocab, 1000)`` tokens;
    a random-length prompt is masked (-100)."""
    g = torch.Generator().manual_seed(seed)
    states = min(vocab, 1000)
    successors = torch.randint(0, states, (states, 4), generator=torch.Generator().manual_seed(1234))
    rows = []
    for _ in range(n):
        ids = torch.empty(length, dtype=torch.long)
        ids[0] = torch.randint(0, states, (1,), generator=g)
        picks = torch.randint(0, 4, (length,), generator=g)
        for t in range(1, length):
            ids[t] = successors[ids[t - 1], picks[t]]
        labels = ids.clone()
        labels[: int(torch.randint(0, length // 2, (1,), generator=g))] = -100
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def _resident_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _logits_to_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Stock evaluation: keep, per token, the argmax and log p(next label) -- not the logits."""
    shifted = labels[:, 1:]
    log_p = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, shifted.clamp(min=0)[..., None])[..., 0]
    return torch.stack([logits[:, :-1].argmax(-1).float(), log_p], -1)


def metrics_from_logits(eval_pred) -> dict[str, float]:
    """Token accuracy and perplexity of the stock model, from what ``_logits_to_predictions`` kept."""
    import numpy as np

    predictions, labels = eval_pred.predictions, eval_pred.label_ids[:, 1:]
    counted = labels != -100
    argmax, log_p = predictions[..., 0], predictions[..., 1]
    return {
        "token_accuracy": float((argmax == labels)[counted].mean()),
        "perplexity": float(np.exp(-log_p[counted].mean())),
    }


def train(variant: str, args: argparse.Namespace) -> dict[str, object]:
    """One Trainer run; ``variant`` is ``"stock"`` or ``"losskit"``."""
    import transformers

    from losskit.integrations.transformers import patch, token_metrics

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max(args.seq, 64),
    )
    model = transformers.LlamaForCausalLM(config)
    per_step = args.batch * 2
    with tempfile.TemporaryDirectory() as output_dir:
        training = transformers.TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch,
            gradient_accumulation_steps=2,
            max_steps=args.steps,
            learning_rate=1e-2,
            warmup_steps=0,
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            seed=0,
            disable_tqdm=True,
            label_smoothing_factor=args.label_smoothing,
            per_device_eval_batch_size=args.batch,
        )
        metrics = (
            {"compute_metrics": token_metrics}
            if variant == "losskit"
            else {"compute_metrics": metrics_from_logits, "preprocess_logits_for_metrics": _logits_to_predictions}
        )
        trainer = transformers.Trainer(
            model=model,
            args=training,
            train_dataset=markov_rows(per_step * args.steps, args.seq, args.vocab, seed=0),
            eval_dataset=markov_rows(2 * args.batch, args.seq, args.vocab, seed=1),
            **metrics,
        )
        if variant == "losskit":
            patch(trainer)  # the one line: the model, and the Trainer's label smoothing
        before = _resident_kib("VmRSS")
        trainer.train()
        peak = _resident_kib("VmHWM")
        evaluation = trainer.evaluate()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "losses": losses,
        "peak_mib": max(peak - before, 0) / 1024,
        "eval": {k: evaluation[f"eval_{k}"] for k in ("loss", "token_accuracy", "perplexity")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps (2 micro-batches each)")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seq", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--batch", type=int, default=8, help="sequences per micro-batch")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="the Trainer's label_smoothing_factor")
    parser.add_argument("--run", choices=["stock", "losskit"], help=argparse.SUPPRESS)  # one run, as JSON
    args = parser.parse_args()
    if args.run:
        print(json.dumps(train(args.run, args)))
        return

    # each run in its own process (its own peak memory), both at once
    runs = {
        variant: subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--run", variant, *sys.argv[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for variant in ("stock", "losskit")
    }
    results = {}
    for variant, run in runs.items():
        stdout, stderr = run.communicate()
        if run.returncode != 0:
            sys.exit(f"the {variant} run failed:\n{stderr}")
        results[variant] = json.loads(stdout.strip().splitlines()[-1])
    stock, fused = results["stock"]["losses"], results["losskit"]["losses"]
    logits_mib = args.batch * args.seq * args.vocab * 4 / 2**20
    print(
        f"Llama 2 x 64, vocabulary {args.vocab}, {args.batch} x {args.seq} tokens per micro-batch "
        f"(float32 logits: {logits_mib:.0f} MiB), 2 micro-batches per step\n"
    )
    print(f"{'step':>4}  {'stock':>10}  {'losskit':>10}")
    for step, (a, b) in enumerate(zip(stock, fused), start=1):
        print(f"{step:>4}  {a:>10.5f}  {b:>10.5f}")
    print()
    for variant in ("stock", "losskit"):
        print(f"{variant:<8} peak memory above the start of training: {results[variant]['peak_mib']:8.1f} MiB")
    for variant in ("stock", "losskit"):
        e = results[variant]["eval"]
        print(
            f"{variant:<8} evaluation: loss {e['loss']:.5f}, token accuracy {e['token_accuracy']:.5f}, "
            f"perplexity {e['perplexity']:.3f}"
        )
    print(f"largest loss difference: {max(abs(a - b) for a, b in zip(stock, fused)):.2e}")


if __name__ == "__main__":
    main()

"""Train a tiny language model on CPU with a vocabulary-parallel output layer and globally
normalized loss, over torch.distributed (gloo).

    .venv/bin/torchrun --nproc_per_node 2 examples/ddp_tiny_lm.py

Every rank sees the same batches (tensor parallelism: the ranks split the output layer's
vocabulary rows, 512 / world each) and keeps a replica of the rest of the model. The fused
vocab-parallel loss never builds the full logits, and it all-reduces the gradient of the
hidden states inside backward, so the replicated layers get the same gradient on every rank
and stay in sync without DDP. Each optimizer step accumulates two micro-batches with different
amounts of padding; ``global_normalizer`` counts the step's real tokens once, so the gradient
is that of the step's mean loss over real tokens (not an average of micro-batch means).

The data is a synthetic Markov chain over the vocabulary (each token has 3 likely successors),
so the loss falls from ln(512) = 6.24 toward the chain's entropy (about 1.1).
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import torch.distributed as dist
from torch import nn

from losskit.distributed import global_normalizer, vocab_parallel_linear_cross_entropy

VOCAB, DIM, SEQ, BATCH = 512, 64, 32, 16


def markov_batch(generator: torch.Generator, successors: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, next-token targets) of BATCH sequences; the last ``pad`` targets are padding (-100)."""
    tokens = torch.empty(BATCH, SEQ + 1, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, VOCAB, (BATCH,), generator=generator)
    for t in range(SEQ):
        choice = torch.randint(0, successors.shape[1], (BATCH,), generator=generator)
        tokens[:, t + 1] = successors[tokens[:, t], choice]
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    if pad:
        targets[:, -pad:] = -100
    return inputs, targets


class Body(nn.Module):
    """Embedding + a causal mix of the previous two positions + MLP: enough for a Markov chain."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.mlp = nn.Sequential(nn.Linear(2 * DIM, 4 * DIM), nn.GELU(), nn.Linear(4 * DIM, DIM))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens)
        prev = torch.cat([torch.zeros_like(e[:, :1]), e[:, :-1]], 1)
        return e + self.mlp(torch.cat([e, prev], -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    if VOCAB % world:
        raise SystemExit(f"--nproc_per_node must divide the vocabulary ({VOCAB})")
    shard = VOCAB // world
    torch.manual_seed(0)  # the same initial weights and data on every rank
    body = Body()
    head = nn.Linear(DIM, VOCAB, bias=False)
    local_head = nn.Parameter(head.weight.detach()[rank * shard : (rank + 1) * shard].clone())
    optimizer = torch.optim.AdamW(list(body.parameters()) + [local_head], lr=args.lr)
    generator = torch.Generator().manual_seed(1)
    successors = torch.randint(0, VOCAB, (VOCAB, 3), generator=generator)
    # every rank is its own data-parallel group: the tensor-parallel ranks share the batch
    data_groups = [dist.new_group([r]) for r in range(world)]
    if rank == 0:
        print(
            f"tiny LM: vocab {VOCAB} split over {world} ranks ({shard} rows each), dim {DIM}, "
            f"{BATCH}x{SEQ} tokens per micro-batch, 2 micro-batches per step; ln(vocab) = {math.log(VOCAB):.2f}"
        )
    for step in range(1, args.steps + 1):
        micro = [markov_batch(generator, successors, pad) for pad in (0, 12)]  # unequal real tokens
        norm = global_normalizer([y for _, y in micro], group=data_groups[rank])
        total = 0.0
        optimizer.zero_grad(set_to_none=True)
        for x, y in micro:
            loss = vocab_parallel_linear_cross_entropy(body(x), local_head, y, normalizer=norm)
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        if rank == 0 and (step == 1 or step % 10 == 0 or step == args.steps):
            print(f"step {step:3d}  loss {total:.4f}  ({int(norm)} real tokens)", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Ring attention forward pass (inference, causal), one rank's view.

The sequence is split into equal blocks, one per rank. Each rank keeps its query block
while the KV blocks travel around the ring: at step s a rank holds the KV block of rank
(rank - s) mod world_size, attends its queries to it and folds the partial result into a
running output. Causality makes blocks from later ranks irrelevant, and those steps are
skipped. The running output starts empty (output 0, lse -inf) in buffers the forward
allocates itself; each fold then allocates a fresh pair.

Here the per-block attention results were computed up front (make_inputs), so the
loop's allocations are only its own.
"""

import torch
from torch import empty_like

from kernels import attention_with_lse, merge_attn_states, randn

CHUNK_PARAM = "world_size"
SMALL = {"tokens": 64, "heads": 4, "dim": 128, "world_size": 8, "rank": -2}  # CI sizes


class PrecomputedBlockAttention:
    """Stands in for flash attention of our queries on the KV block of `kv_rank`."""

    def __init__(self, partials):
        self.partials = partials

    def __call__(self, q, kv_rank):
        return self.partials[kv_rank]


def ring_attention_forward(q, block_attention, rank, world_size):
    num_tokens, num_heads, head_dim = q.shape
    out = torch.zeros((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.full((num_heads, num_tokens), float("-inf"), dtype=torch.float32, device=q.device)

    step = 0
    while step < world_size:
        kv_rank = (rank - step) % world_size
        step += 1
        if kv_rank > rank:
            # Causal: that whole KV block comes after our queries.
            continue
        block_out, block_lse = block_attention(q, kv_rank)

        new_out = empty_like(out)
        new_lse = empty_like(lse)
        merge_attn_states(
            output=new_out,
            output_lse=new_lse,
            prefix_output=out,
            prefix_lse=lse,
            suffix_output=block_out,
            suffix_lse=block_lse,
        )
        out = new_out
        lse = new_lse

    return out, lse


def make_inputs(device, seed=0, tokens=1024, heads=32, dim=128, world_size=8, rank=-1):
    """Our rank's queries and its attention results on every earlier KV block.

    `rank` may be negative, counted from the end (-1: the last rank, which attends to
    every block).
    """
    rank = rank % world_size
    g = torch.Generator().manual_seed(seed)
    q = randn((tokens, heads, dim), g, device)
    scale = dim**-0.5
    causal_mask = torch.ones(tokens, tokens, dtype=torch.bool, device=device).tril()
    partials = {}
    for kv_rank in range(rank + 1):
        k = randn((tokens, heads, dim), g, device)
        v = randn((tokens, heads, dim), g, device)
        # The diagonal block is causal within itself; earlier blocks are fully visible.
        mask = causal_mask if kv_rank == rank else None
        partials[kv_rank] = attention_with_lse(q, k, v, scale, key_mask=mask)
    return {
        "q": q,
        "block_attention": PrecomputedBlockAttention(partials),
        "rank": rank,
        "world_size": world_size,
    }


def run_loop(inputs):
    """Call the loop on inputs from make_inputs; returns (out, lse)."""
    return ring_attention_forward(**inputs)


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

"""Split-KV ("flash-decoding") attention: combining the partial results of the KV splits.

A decode step has one query token per request; with few requests and long contexts
that cannot fill the GPU, so each request's KV cache is cut into splits attended in
parallel. Every split leaves a partial output and its log-sum-exp (kept in fp32), and
a combine step folds the splits together. Splits past the end of a short request saw
no keys (lse -inf, output 0) and must fold in as nothing. This combine allocates a
fresh pair of buffers per split.

Shapes: partial outputs fp32 [num_splits, batch, heads, head_dim], lse fp32
[num_splits, heads, batch]; the decode batch plays the role of the tokens.
"""

import torch as th

from kernels import merge_attn_states, randn

CHUNK_PARAM = "num_splits"
SMALL = {  # CI sizes
    "batch": 8, "heads": 8, "kv_heads": 2, "dim": 128, "num_splits": 8, "split_len": 16
}


def combine_kv_splits(split_out, split_lse, num_splits):
    # Start from the first split: every request has at least one key there.
    acc, acc_lse = split_out[0], split_lse[0]
    for s in range(1, num_splits):
        tmp = th.empty_like(acc)
        tmp_lse = th.empty_like(acc_lse)
        merge_attn_states(tmp, tmp_lse, acc, acc_lse, split_out[s], split_lse[s])
        acc, acc_lse = tmp, tmp_lse
        del tmp, tmp_lse
    return acc, acc_lse


def make_inputs(
    device, seed=0, batch=32, heads=32, kv_heads=8, dim=128, num_splits=16, split_len=128
):
    """Per-split partial results of a GQA decode batch with random context lengths."""
    g = th.Generator().manual_seed(seed)
    group = heads // kv_heads
    max_len = num_splits * split_len
    seq_lens = th.randint(1, max_len + 1, (batch,), generator=g).to(device)
    q = randn((batch, kv_heads, group, dim), g, device)
    scale = dim**-0.5
    split_out = th.empty((num_splits, batch, heads, dim), device=device)
    split_lse = th.empty((num_splits, heads, batch), device=device)
    for s in range(num_splits):
        k = randn((batch, split_len, kv_heads, dim), g, device)
        v = randn((batch, split_len, kv_heads, dim), g, device)
        scores = th.einsum("bkgd,blkd->kgbl", q.float(), k.float()) * scale
        positions = s * split_len + th.arange(split_len, device=device)
        in_context = positions[None, :] < seq_lens[:, None]  # [batch, split_len]
        scores.masked_fill_(~in_context, float("-inf"))
        lse = th.logsumexp(scores, dim=-1)  # -inf where the split is past the end
        probs = th.exp(scores - lse[..., None]).nan_to_num_(0.0)
        split_out[s] = th.einsum("kgbl,blkd->bkgd", probs, v.float()).reshape(batch, heads, dim)
        split_lse[s] = lse.reshape(heads, batch)
    return {"split_out": split_out, "split_lse": split_lse, "num_splits": num_splits}


def run_loop(inputs):
    """Call the loop on inputs from make_inputs; returns (acc, acc_lse)."""
    return combine_kv_splits(**inputs)


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if th.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

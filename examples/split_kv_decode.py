"""Split-KV ("flash-decoding") attention: combining the partial results of the KV splits.

A decode step has one query token per request; with few requests and long contexts
that cannot fill the GPU, so each request's KV cache is cut into splits attended in
parallel. The split kernel (kernels.split_kv_attention, one launch for all splits, as
in flash-decoding) writes every split's partial output and log-sum-exp (fp32) into a
fresh workspace, and a combine step folds the splits together. Splits past the end of
a short request saw no keys (lse -inf, output 0) and must fold in as nothing. This
combine allocates a fresh pair of buffers per split.

Shapes: partial outputs fp32 [num_splits, batch, heads, head_dim], lse fp32
[num_splits, heads, batch]; the decode batch plays the role of the tokens.
"""

import torch as th

from kernels import merge_attn_states, randn, split_kv_attention

CHUNK_PARAM = "num_splits"
SMALL = {  # CI sizes
    "batch": 8, "heads": 8, "kv_heads": 2, "dim": 128, "num_splits": 8, "split_len": 16
}
SWEEP = (4, 16, 64)


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


def decode_attention(q, k_cache, v_cache, seq_lens, num_splits, split_len):
    """One decode step of a GQA batch: the split kernel, then the combine."""
    split_out, split_lse = split_kv_attention(q, k_cache, v_cache, seq_lens, num_splits,
                                              split_len)  # fmt: skip
    return combine_kv_splits(split_out, split_lse, num_splits)


def make_inputs(
    device, seed=0, batch=32, heads=32, kv_heads=8, dim=128, num_splits=16, split_len=128
):
    """A decode batch's queries and KV caches, with random context lengths."""
    g = th.Generator().manual_seed(seed)
    max_len = num_splits * split_len
    seq_lens = th.randint(1, max_len + 1, (batch,), generator=g).to(device)
    return {
        "q": randn((batch, kv_heads, heads // kv_heads, dim), g, device),
        "k_cache": randn((batch, max_len, kv_heads, dim), g, device),
        "v_cache": randn((batch, max_len, kv_heads, dim), g, device),
        "seq_lens": seq_lens,
        "num_splits": num_splits,
        "split_len": split_len,
    }


def run_loop(inputs):
    """The call under test; returns (acc, acc_lse)."""
    return decode_attention(**inputs)


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if th.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

"""MLA chunked-prefill context attention, written as vLLM 0.21.0 writes it.

During prefill, the new tokens of a request must attend to its whole cached context.
vLLM's MLA backend (MLACommonImpl._compute_prefill_context) does it one workspace-sized
chunk at a time: it gathers the chunk's latent KV from the paged cache into the
workspace, up-projects it (kv_b_proj) into per-head keys and values, runs attention of
the new tokens on the chunk, which returns a fresh output and log-sum-exp, and folds
them into the running result with merge_attn_states. The loop allocates a new pair of
merge targets for every chunk: 2 * (chunks - 1) allocations of the full output size per
layer and prefill step. As in vLLM, the previous chunk's output stays bound to
attn_output while the next chunk is gathered, up-projected and attended.

Shapes: output bf16 [tokens, heads, v_head_dim], lse fp32 [heads, tokens].
"""

import torch

from kernels import flash_attn_with_lse, gather_cache, merge_attn_states, randn
from mla_common import QK_HEAD_DIM, MLALayerWeights, make_chunked_prefill, make_weights

CHUNK_PARAM = "chunks"  # the size that sets the number of merges (verify.py --chunks)
SMALL = {"tokens": 64, "heads": 4, "dim": 128, "chunks": 8, "chunk_len": 16}  # CI sizes
SWEEP = (4, 16, 64)  # chunk counts of the GPU report's sweep


class MLAPrefillContext(MLALayerWeights):
    """The part of an MLA attention layer that attends to the cached context."""

    def _run_prefill_context_chunk(self, prefill, chunk_idx, q, k, v):
        # FlashAttention with return_softmax_lse=True (kernels.flash_attn_with_lse).
        assert prefill.chunked_context is not None
        return flash_attn_with_lse(q, k, v, self.scale)

    def _compute_prefill_context(self, q, kv_c_and_k_pe_cache, attn_metadata):
        assert attn_metadata.prefill is not None
        prefill_metadata = attn_metadata.prefill
        assert prefill_metadata.chunked_context is not None

        output = None
        iters = len(prefill_metadata.chunked_context.seq_tot)
        workspace = prefill_metadata.chunked_context.workspace
        for i in range(iters):
            toks = prefill_metadata.chunked_context.seq_tot[i]
            gather_cache(
                src_cache=kv_c_and_k_pe_cache,
                dst=workspace,
                block_table=prefill_metadata.block_table,
                start=prefill_metadata.chunked_context.starts[i],
                num_tokens=toks,
            )

            kv_c_normed = workspace[:toks][..., : self.kv_lora_rank]
            k_pe = workspace[:toks][..., self.kv_lora_rank :].unsqueeze(1)

            kv_nope = self.kv_b_proj(kv_c_normed)[0].view(
                -1, self.num_heads, self.qk_nope_head_dim + self.v_head_dim
            )
            k_nope, v = kv_nope.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)

            k = self._concat_k_nope_k_pe(k_nope, k_pe)

            attn_output, attn_softmax_lse = self._run_prefill_context_chunk(
                prefill=prefill_metadata,
                chunk_idx=i,
                q=q,
                k=k,
                v=v,
            )

            if output is None:
                output = attn_output
                output_lse = attn_softmax_lse
            else:
                output_tmp = torch.empty_like(output)
                output_lse_tmp = torch.empty_like(output_lse)
                merge_attn_states(
                    output=output_tmp,
                    output_lse=output_lse_tmp,
                    prefix_output=output,
                    prefix_lse=output_lse,
                    suffix_output=attn_output,
                    suffix_lse=attn_softmax_lse,
                )
                output = output_tmp
                output_lse = output_lse_tmp

        return output, output_lse


def make_inputs(device, seed=0, tokens=1024, heads=128, dim=128, chunks=16, chunk_len=256):
    """The layer, its prefill queries and a cached context of chunks * chunk_len tokens."""
    g = torch.Generator().manual_seed(seed)
    impl = MLAPrefillContext(heads, dim, make_weights(g, device, heads, dim))
    q = randn((tokens, heads, QK_HEAD_DIM), g, device)
    cache, attn_metadata = make_chunked_prefill(g, device, chunks, chunk_len)
    return {"impl": impl, "q": q, "kv_c_and_k_pe_cache": cache, "attn_metadata": attn_metadata}


def run_loop(inputs):
    """The call under test; returns (output, output_lse)."""
    return inputs["impl"]._compute_prefill_context(
        inputs["q"], inputs["kv_c_and_k_pe_cache"], inputs["attn_metadata"]
    )


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

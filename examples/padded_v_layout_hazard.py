"""Why the swap fix is unsafe when the accumulator starts as a tensor the loop does not own.

The loop is vLLM 0.21.0's MLA prefill-context loop (as in mla_chunked_prefill.py: every
chunk is gathered, up-projected and attended inside the loop), with two real details of
that time:

* The attention backend pads V from 128 to 192 dims (the QK head dim) for a
  FlashAttention that needs equal head dims, and returns the output as a view,
  out_padded[..., :128]: shape [tokens, heads, 128], head stride 192, token stride
  heads * 192. Every chunk's output is such a view of a fresh padded output.
* The merge kernel reads the prefix AND the suffix with the prefix's head stride (and
  token stride = heads * head stride), and writes the output with its own
  (kernels.merge_attn_states_prefix_strides).

Which strides each merge k (k = 1 .. chunks-1) reads with, by construction:

* original: merge 1 reads prefix = chunk 0's view (stride 192), so both inputs are read
  right. From merge 2 on the prefix is the previous torch.empty_like buffer, which is
  contiguous (empty_like of a non-dense view), so the suffix (stride 192) is read with
  stride 128: wrong values, but the same ones on every run. The out-buffer is always a
  fresh contiguous buffer, written with its own strides.
* swap (`output, output_tmp = output_tmp, output`): merge 1 as above; merge 2 writes
  into chunk 0's view (correctly, with its own strides) while reading a contiguous
  prefix, as the original does; merge 3 reads prefix = chunk 0's view again, so the
  suffix is read with stride 192 where the original read it with 128. From 4 chunks on
  the results differ from the original's, and the layout of the result alternates with
  the parity of the chunk count.
* ping-pong: two contiguous empty_like buffers alternate; chunk 0's view is only ever
  read, at merge 1. Every merge reads with the same strides as the original's:
  bitwise-identical results.

A codemod must keep the program's behaviour, bugs included: here the swap changes it,
ping-pong keeps it.
"""

import torch

from kernels import flash_attn_with_lse, gather_cache, randn
from kernels import merge_attn_states_prefix_strides as merge_attn_states
from mla_common import QK_HEAD_DIM, MLALayerWeights, make_chunked_prefill, make_weights

CHUNK_PARAM = "chunks"
SMALL = {"tokens": 64, "heads": 4, "dim": 128, "chunks": 8, "chunk_len": 16}  # CI sizes
SWEEP = (4, 16, 64)


def expect_unsafe_equal(**size):
    """The swap form changes the results once there are 3 merges (see the docstring)."""
    return size.get("chunks", 16) < 4


class MLAPrefillContext(MLALayerWeights):
    def _flash_attn_varlen_diff_headdims(self, q, k, v, softmax_scale):
        # FlashAttention 2 needs V's head dim to be Q's: pad V, cut the output back.
        padded_v = torch.nn.functional.pad(v, [0, q.shape[-1] - v.shape[-1]], value=0)
        attn_out, lse = flash_attn_with_lse(q, k, padded_v, softmax_scale)
        return attn_out[..., : v.shape[-1]], lse

    def _run_prefill_context_chunk(self, prefill, chunk_idx, q, k, v):
        assert prefill.chunked_context is not None
        return self._flash_attn_varlen_diff_headdims(q, k, v, softmax_scale=self.scale)

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
    assert dim < QK_HEAD_DIM, "the hazard needs padding"
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
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.stride(), out.stride())

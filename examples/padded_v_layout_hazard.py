"""Why the swap fix is unsafe when the accumulator starts as a tensor the loop does not own.

The loop is vLLM 0.21.0's MLA prefill-context loop (as in mla_chunked_prefill.py), with
two real details of that time:

* The attention backend pads V from 128 to 192 dims (the QK head dim) and returns the
  output as a view, out_padded[..., :128]: shape [tokens, heads, 128], head stride 192,
  token stride heads * 192. Every chunk's output is such a view.
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

from dataclasses import dataclass

import torch

from kernels import attention_with_lse, randn
from kernels import merge_attn_states_prefix_strides as merge_attn_states

QK_HEAD_DIM = 128 + 64  # nope + rope; V is padded to this

CHUNK_PARAM = "chunks"
SMALL = {"tokens": 64, "heads": 4, "dim": 128, "chunks": 8, "chunk_len": 16}  # CI sizes


def expect_unsafe_equal(**size):
    """The swap form changes the results once there are 3 merges (see the docstring)."""
    return size.get("chunks", 16) < 4


@dataclass
class ChunkedContextMetadata:
    seq_tot: list[int]


@dataclass
class PrefillMetadata:
    chunked_context: ChunkedContextMetadata | None


class MLAPrefillContext:
    def __init__(self, padded_outputs, chunk_lses, v_head_dim):
        self.padded_outputs = padded_outputs
        self.chunk_lses = chunk_lses
        self.v_head_dim = v_head_dim

    def _run_prefill_context_chunk(self, prefill, chunk_idx, q):
        # Stands in for FlashAttention with V padded to the QK head dim; as in vLLM the
        # padding is cut off by slicing, which leaves a strided view.
        attn_output = self.padded_outputs[chunk_idx][..., : self.v_head_dim]
        return attn_output, self.chunk_lses[chunk_idx]

    def _compute_prefill_context(self, q, prefill_metadata):
        assert prefill_metadata.chunked_context is not None

        output = None
        iters = len(prefill_metadata.chunked_context.seq_tot)
        for i in range(iters):
            attn_output, attn_softmax_lse = self._run_prefill_context_chunk(
                prefill=prefill_metadata,
                chunk_idx=i,
                q=q,
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


def make_inputs(device, seed=0, tokens=1024, heads=128, dim=128, chunks=16, chunk_len=64):
    """Fresh queries and per-chunk attention results with V zero-padded to QK_HEAD_DIM."""
    assert dim < QK_HEAD_DIM, "the hazard needs padding"
    g = torch.Generator().manual_seed(seed)
    q = randn((tokens, heads, QK_HEAD_DIM), g, device)
    scale = QK_HEAD_DIM**-0.5
    padded_outputs, lses = [], []
    for _ in range(chunks):
        k = randn((chunk_len, heads, QK_HEAD_DIM), g, device)
        v = randn((chunk_len, heads, dim), g, device)
        v_padded = torch.nn.functional.pad(v, [0, QK_HEAD_DIM - dim], value=0)
        out, lse = attention_with_lse(q, k, v_padded, scale)  # out [tokens, heads, 192]
        padded_outputs.append(out)
        lses.append(lse)
    prefill = PrefillMetadata(ChunkedContextMetadata(seq_tot=[chunk_len] * chunks))
    impl = MLAPrefillContext(padded_outputs, lses, v_head_dim=dim)
    return {"impl": impl, "q": q, "prefill": prefill}


def run_loop(inputs):
    """Call the loop on inputs from make_inputs; returns (output, output_lse)."""
    return inputs["impl"]._compute_prefill_context(inputs["q"], inputs["prefill"])


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.stride(), out.stride())

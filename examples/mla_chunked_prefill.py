"""MLA chunked-prefill context attention, written as vLLM 0.21.0 writes it.

During prefill, the new tokens of a request must attend to its whole cached context.
vLLM's MLA backend (MLACommonImpl._compute_prefill_context) gathers that context from
the latent KV cache one workspace-sized chunk at a time, runs attention of the new
tokens against each chunk, and folds each chunk's partial result (output and
log-sum-exp) into the running result with merge_attn_states. The loop allocates a new
pair of merge targets for every chunk: 2 * (chunks - 1) allocations of the full output
size per layer and prefill step.

Shapes: output bf16 [tokens, heads, v_head_dim], lse fp32 [heads, tokens].
"""

from dataclasses import dataclass

import torch

from kernels import attention_with_lse, merge_attn_states, randn

QK_NOPE_HEAD_DIM = 128
QK_ROPE_HEAD_DIM = 64
QK_HEAD_DIM = QK_NOPE_HEAD_DIM + QK_ROPE_HEAD_DIM

CHUNK_PARAM = "chunks"  # the size that sets the number of merges (verify.py --chunks)
SMALL = {"tokens": 64, "heads": 4, "dim": 128, "chunks": 8, "chunk_len": 16}  # CI sizes


@dataclass
class ChunkedContextMetadata:
    seq_tot: list[int]  # context tokens gathered per chunk


@dataclass
class PrefillMetadata:
    chunked_context: ChunkedContextMetadata | None


class MLAPrefillContext:
    """The part of an MLA attention layer that attends to the cached context."""

    def __init__(self, chunk_outputs, chunk_lses):
        self.chunk_outputs = chunk_outputs
        self.chunk_lses = chunk_lses

    def _run_prefill_context_chunk(self, prefill, chunk_idx, q):
        # Stands in for FlashAttention over the gathered latent KV of chunk
        # `chunk_idx`. Its results were computed up front (make_inputs), so the
        # only allocations in the loop below are the loop's own.
        return self.chunk_outputs[chunk_idx], self.chunk_lses[chunk_idx]

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
    """Fresh prefill queries and per-chunk attention results over random context chunks."""
    g = torch.Generator().manual_seed(seed)
    q = randn((tokens, heads, QK_HEAD_DIM), g, device)
    scale = QK_HEAD_DIM**-0.5
    outputs, lses = [], []
    for _ in range(chunks):
        k = randn((chunk_len, heads, QK_HEAD_DIM), g, device)
        v = randn((chunk_len, heads, dim), g, device)
        out, lse = attention_with_lse(q, k, v, scale)
        outputs.append(out)
        lses.append(lse)
    prefill = PrefillMetadata(ChunkedContextMetadata(seq_tot=[chunk_len] * chunks))
    return {"impl": MLAPrefillContext(outputs, lses), "q": q, "prefill": prefill}


def run_loop(inputs):
    """Call the loop on inputs from make_inputs; returns (output, output_lse)."""
    return inputs["impl"]._compute_prefill_context(inputs["q"], inputs["prefill"])


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

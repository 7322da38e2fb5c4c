"""MLA chunked-prefill context under context parallelism, simulated in one process.

With context parallelism the cached context of a long request is spread over the ranks
of a context-parallel group: the context chunks are dealt round-robin to the ranks,
each rank attends the prefill queries to its own chunks, and one all-gather brings
every rank's partial results (output and log-sum-exp per chunk) to every rank, which
folds them into the context attention result. The fold is vLLM 0.21.0's loop
(MLACommonImpl._context_parallel_compute_prefill_context), with its fresh pair of
merge targets per chunk.

Here the ranks are simulated: make_inputs computes each rank's partial results and
stacks them as the all-gather would ([world_size, chunks_per_rank, ...]).
"""

from dataclasses import dataclass

import torch

from kernels import attention_with_lse, merge_attn_states, randn

QK_HEAD_DIM = 128 + 64  # nope + rope

CHUNK_PARAM = "chunks"
SMALL = {  # CI sizes
    "tokens": 64, "heads": 4, "dim": 128, "chunks": 8, "chunk_len": 16, "cp_world_size": 2
}


@dataclass
class ChunkedContextMetadata:
    seq_tot: list[int]  # context tokens per chunk, over all ranks


class SimulatedCPGroup:
    """Stands in for the context-parallel process group; all its ranks live here."""

    def __init__(self, rank_outputs, rank_lses):
        self.world_size = len(rank_outputs)
        self._gathered = (torch.stack(rank_outputs), torch.stack(rank_lses))

    def all_gather_partial_states(self):
        # outputs [world_size, chunks_per_rank, tokens, heads, dim],
        # lses [world_size, chunks_per_rank, heads, tokens]
        return self._gathered


class MLAContextParallelPrefill:
    def __init__(self, cp_group):
        self.cp_group = cp_group

    def _context_parallel_compute_prefill_context(self, q, chunked_context):
        cp_world_size = self.cp_group.world_size
        gathered_output, gathered_lse = self.cp_group.all_gather_partial_states()

        output = None
        iters = len(chunked_context.seq_tot)
        for i in range(iters):
            # Chunk i was dealt to rank i % cp_world_size, as its (i // cp_world_size)-th.
            src_rank, local_idx = i % cp_world_size, i // cp_world_size
            attn_output = gathered_output[src_rank, local_idx]
            attn_softmax_lse = gathered_lse[src_rank, local_idx]

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


def make_inputs(
    device, seed=0, tokens=1024, heads=128, dim=128, chunks=16, chunk_len=64, cp_world_size=4
):
    """Fresh queries; every simulated rank attends them to its share of the chunks."""
    assert chunks % cp_world_size == 0, "chunks are dealt evenly to the ranks"
    g = torch.Generator().manual_seed(seed)
    q = randn((tokens, heads, QK_HEAD_DIM), g, device)
    scale = QK_HEAD_DIM**-0.5
    rank_outputs = [[] for _ in range(cp_world_size)]
    rank_lses = [[] for _ in range(cp_world_size)]
    for i in range(chunks):
        k = randn((chunk_len, heads, QK_HEAD_DIM), g, device)
        v = randn((chunk_len, heads, dim), g, device)
        out, lse = attention_with_lse(q, k, v, scale)
        rank_outputs[i % cp_world_size].append(out)
        rank_lses[i % cp_world_size].append(lse)
    group = SimulatedCPGroup(
        [torch.stack(o) for o in rank_outputs], [torch.stack(lse) for lse in rank_lses]
    )
    chunked_context = ChunkedContextMetadata(seq_tot=[chunk_len] * chunks)
    return {"impl": MLAContextParallelPrefill(group), "q": q, "chunked_context": chunked_context}


def run_loop(inputs):
    """Call the loop on inputs from make_inputs; returns (output, output_lse)."""
    return inputs["impl"]._context_parallel_compute_prefill_context(
        inputs["q"], inputs["chunked_context"]
    )


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

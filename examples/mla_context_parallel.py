"""MLA chunked-prefill context under decode context parallelism, simulated in one process.

With decode context parallelism (DCP) the KV cache of a request is spread over the
ranks of a DCP group, token t on rank t % world_size. vLLM 0.21.0's
MLACommonImpl._context_parallel_compute_prefill_context attends the prefill queries to
the cached context one chunk at a time: each rank gathers its own tokens of the chunk
into the first part of the workspace, an all-gather brings every rank's tokens (a fresh
tensor, copied into the rest of the workspace), reorg_kvcache puts them back in token
order, and then, as without DCP, the chunk is up-projected and attended (a fresh output
and lse per chunk) and folded into the running result with a fresh pair of merge
targets per chunk.

The other ranks are simulated: SimulatedDCPGroup holds their cache shards and answers
the all-gather with their gathered tokens.
"""

import torch

from kernels import flash_attn_with_lse, gather_cache, merge_attn_states, randn
from mla_common import (
    KV_LORA_RANK,
    QK_HEAD_DIM,
    QK_ROPE_HEAD_DIM,
    MLALayerWeights,
    make_chunked_prefill,
    make_paged_cache,
    make_weights,
)

CHUNK_PARAM = "chunks"
SMALL = {  # CI sizes
    "tokens": 64, "heads": 4, "dim": 128, "chunks": 8, "chunk_len": 16, "dcp_world_size": 2
}


class SimulatedDCPGroup:
    """Stands in for the DCP process group; the other ranks' caches live here."""

    def __init__(self, world_size, remote_caches):
        self.world_size = world_size
        self.remote_caches = remote_caches  # rank -> (cache, block_table), rank 0 is us

    def all_gather(self, local, dim, start):
        # Every other rank gathers the same local positions of its own shard.
        parts = [local]
        for rank in range(1, self.world_size):
            cache, block_table = self.remote_caches[rank]
            remote = torch.empty_like(local)
            gather_cache(cache, remote, block_table, start, local.shape[0])
            parts.append(remote)
        return torch.cat(parts, dim=dim)


def reorg_kvcache(allgathered_kv_c_normed, allgathered_k_pe, dcp_world_size, toks):
    """Rank-major all-gathered tokens back to token order (token t from rank t % W)."""

    def reorder(t):
        return t.view(dcp_world_size, toks, *t.shape[1:]).transpose(0, 1).flatten(0, 1)

    # reshape of a transposed view: fresh tensors, as vLLM's reorg (a cat) returns.
    kv_c_normed = reorder(allgathered_kv_c_normed).contiguous()
    k_pe = reorder(allgathered_k_pe).contiguous()
    return kv_c_normed, k_pe


class MLAContextParallelPrefill(MLALayerWeights):
    def __init__(self, num_heads, v_head_dim, kv_b_proj_weight, dcp_group):
        super().__init__(num_heads, v_head_dim, kv_b_proj_weight)
        self.dcp_group = dcp_group

    def _run_prefill_context_chunk(self, prefill, chunk_idx, q, k, v):
        assert prefill.chunked_context is not None
        return flash_attn_with_lse(q, k, v, self.scale)

    def _context_parallel_compute_prefill_context(
        self, q, kv_c_and_k_pe_cache, attn_metadata, dcp_world_size
    ):
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
            # workspace
            # |------- N tokens --------|--------- N*dcp_size tokens ----------|
            # |<- use for loca_gather ->|<--------- use for allgather -------->|
            allgather_offset = workspace.shape[0] // (dcp_world_size + 1)
            assert toks <= allgather_offset
            local_gathered_kvcache = workspace[:toks]
            cur_allgather_workspace = workspace[
                allgather_offset : allgather_offset * (1 + dcp_world_size)
            ]
            cur_allgather_kvcache = cur_allgather_workspace[: toks * dcp_world_size]
            cur_allgather_kvcache.copy_(
                self.dcp_group.all_gather(
                    local_gathered_kvcache, dim=0, start=prefill_metadata.chunked_context.starts[i]
                )
            )
            allgatered_kv_c_normed, allgatered_k_pe = cur_allgather_kvcache.unsqueeze(1).split(
                [self.kv_lora_rank, self.qk_rope_head_dim], dim=-1
            )

            kv_c_normed, k_pe = reorg_kvcache(
                allgatered_kv_c_normed, allgatered_k_pe, dcp_world_size=dcp_world_size, toks=toks
            )

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


def make_inputs(
    device, seed=0, tokens=1024, heads=128, dim=128, chunks=16, chunk_len=256, dcp_world_size=4
):
    """The layer, its queries, and a context of chunks * chunk_len tokens over the ranks."""
    assert chunk_len % dcp_world_size == 0, "every rank holds the same share of a chunk"
    g = torch.Generator().manual_seed(seed)
    weights = make_weights(g, device, heads, dim)
    q = randn((tokens, heads, QK_HEAD_DIM), g, device)
    local_len = chunk_len // dcp_world_size
    workspace_tokens = local_len * (dcp_world_size + 1)
    cache, attn_metadata = make_chunked_prefill(g, device, chunks, local_len, workspace_tokens)
    remote = {r: make_paged_cache(g, device, chunks * local_len) for r in range(1, dcp_world_size)}
    assert attn_metadata.prefill.chunked_context.workspace.shape[1] == (
        KV_LORA_RANK + QK_ROPE_HEAD_DIM
    )
    group = SimulatedDCPGroup(dcp_world_size, remote)
    impl = MLAContextParallelPrefill(heads, dim, weights, group)
    return {
        "impl": impl,
        "q": q,
        "kv_c_and_k_pe_cache": cache,
        "attn_metadata": attn_metadata,
        "dcp_world_size": dcp_world_size,
    }


def run_loop(inputs):
    """The call under test; returns (output, output_lse)."""
    return inputs["impl"]._context_parallel_compute_prefill_context(
        inputs["q"], inputs["kv_c_and_k_pe_cache"], inputs["attn_metadata"],
        inputs["dcp_world_size"],
    )  # fmt: skip


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

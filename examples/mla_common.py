"""What the MLA examples share: the layer's weights, its paged latent KV cache and the
chunked-context metadata, laid out as vLLM's MLA backend (MLACommonImpl) has them.

Not an example itself (verify.py copies it beside the rewritten examples).

The cache holds, per context token, the compressed latent KV (kv_lora_rank values)
followed by the rope part of the key (qk_rope_head_dim values), in blocks of
BLOCK_SIZE tokens found through a block table. For each chunk the layer gathers the
chunk's tokens into a preallocated workspace, up-projects the latent part with
kv_b_proj into per-head k_nope and v, appends the shared rope key and runs attention
of the prefill queries on that chunk: every chunk's output and lse are fresh tensors.
"""

from dataclasses import dataclass

import torch

from kernels import randn

KV_LORA_RANK = 512
QK_NOPE_HEAD_DIM = 128
QK_ROPE_HEAD_DIM = 64
QK_HEAD_DIM = QK_NOPE_HEAD_DIM + QK_ROPE_HEAD_DIM
BLOCK_SIZE = 16


@dataclass
class ChunkedContextMetadata:
    seq_tot: list[int]  # context tokens gathered per chunk (on this rank)
    starts: list[int]  # first context token of each chunk (on this rank)
    workspace: torch.Tensor  # [workspace tokens, KV_LORA_RANK + QK_ROPE_HEAD_DIM]


@dataclass
class PrefillMetadata:
    block_table: torch.Tensor  # [max blocks] of the one prefill request
    chunked_context: ChunkedContextMetadata | None


@dataclass
class MLACommonMetadata:
    prefill: PrefillMetadata | None


class MLALayerWeights:
    """kv_b_proj and the head sizes of one MLA attention layer."""

    def __init__(self, num_heads, v_head_dim, kv_b_proj_weight):
        self.num_heads = num_heads
        self.kv_lora_rank = KV_LORA_RANK
        self.qk_nope_head_dim = QK_NOPE_HEAD_DIM
        self.qk_rope_head_dim = QK_ROPE_HEAD_DIM
        self.v_head_dim = v_head_dim
        self.scale = QK_HEAD_DIM**-0.5
        self.kv_b_proj_weight = kv_b_proj_weight

    def kv_b_proj(self, kv_c_normed):
        # vLLM's ColumnParallelLinear returns (output, output_bias).
        return torch.nn.functional.linear(kv_c_normed, self.kv_b_proj_weight), None

    def _concat_k_nope_k_pe(self, k_nope, k_pe):
        # As vLLM: one preallocated key, two copies (k_pe broadcast over the heads).
        k = torch.empty(
            (*k_nope.shape[:-1], k_nope.shape[-1] + k_pe.shape[-1]),
            dtype=k_nope.dtype,
            device=k_nope.device,
        )
        k[..., : k_nope.shape[-1]] = k_nope
        k[..., k_nope.shape[-1] :] = k_pe
        return k


def make_weights(g, device, heads, dim):
    width = heads * (QK_NOPE_HEAD_DIM + dim)
    # Scaled so that the up-projected keys and values have unit variance.
    weight = randn((width, KV_LORA_RANK), g, device, dtype=torch.float32) * KV_LORA_RANK**-0.5
    return weight.to(torch.bfloat16)


def make_paged_cache(g, device, num_tokens, spare_blocks=3):
    """A paged latent cache holding num_tokens tokens in shuffled blocks, and its table."""
    num_blocks = -(-num_tokens // BLOCK_SIZE) + spare_blocks
    cache = randn((num_blocks, BLOCK_SIZE, KV_LORA_RANK + QK_ROPE_HEAD_DIM), g, device)
    block_table = torch.randperm(num_blocks, generator=g).to(device)
    return cache, block_table


def make_chunked_prefill(g, device, chunks, chunk_len, workspace_tokens=None):
    """Metadata of one request whose context (chunks * chunk_len tokens) is cached."""
    cache, block_table = make_paged_cache(g, device, chunks * chunk_len)
    width = KV_LORA_RANK + QK_ROPE_HEAD_DIM
    # vLLM allocates it once with torch.empty; zeros keep the caller's state reproducible.
    workspace = torch.zeros((workspace_tokens or chunk_len, width), dtype=cache.dtype,
                            device=device)  # fmt: skip
    chunked = ChunkedContextMetadata(
        seq_tot=[chunk_len] * chunks,
        starts=[i * chunk_len for i in range(chunks)],
        workspace=workspace,
    )
    return cache, MLACommonMetadata(PrefillMetadata(block_table, chunked))

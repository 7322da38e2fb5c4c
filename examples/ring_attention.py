"""Ring attention forward pass (inference, causal), one rank's view.

The sequence is split into equal blocks, one per rank. Each rank keeps its query block
while the KV blocks travel around the ring (as in ring-flash-attn): at step s a rank
holds the KV block of rank (rank - s) mod world_size, posts the exchange that brings
the next block into fresh receive buffers, attends its queries to the block it holds
(a fresh partial output and lse from the attention kernel) and folds the partial result
into a running output. Causality makes blocks from later ranks irrelevant, and those
steps attend nothing. The running output starts empty (output 0, lse -inf) in buffers
the forward allocates itself; each fold then allocates a fresh pair.

The other ranks are simulated: SimulatedRingGroup holds their KV blocks, and the
forward's RingComm "receives" one by copying it into new buffers, as a send/recv into
torch.empty_like buffers does.
"""

import torch
from torch import empty_like

from kernels import flash_attn_with_lse, merge_attn_states, randn

CHUNK_PARAM = "world_size"
SMALL = {"tokens": 64, "heads": 4, "dim": 128, "world_size": 8, "rank": -2}  # CI sizes
SWEEP = (4, 8, 16)


class SimulatedRingGroup:
    """Stands in for the ring's process group; holds the other ranks' KV blocks."""

    def __init__(self, rank, world_size, remote_kv):
        self.rank = rank
        self.world_size = world_size
        self.remote_kv = remote_kv  # {rank: (k, v)} of every other rank


class RingComm:
    """One forward's ring exchange (as ring-flash-attn makes one per call)."""

    def __init__(self, process_group):
        self.group = process_group
        self.rank = process_group.rank
        self.world_size = process_group.world_size
        self._step = 0

    def send_recv_kv(self, k, v):
        # Receives the block our left neighbour holds now: the block of rank
        # (rank - step - 1) mod world_size, in fresh buffers.
        self._step += 1
        src = (self.rank - self._step) % self.world_size
        remote_k, remote_v = self.group.remote_kv[src]
        next_k, next_v = torch.empty_like(k), torch.empty_like(v)
        next_k.copy_(remote_k)
        next_v.copy_(remote_v)
        return next_k, next_v

    def wait(self):
        pass  # the copies above are already done


def ring_attention_forward(q, k, v, process_group, softmax_scale):
    comm = RingComm(process_group)
    num_tokens, num_heads, head_dim = q.shape
    out = torch.zeros((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.full((num_heads, num_tokens), float("-inf"), dtype=torch.float32, device=q.device)

    step = 0
    while step < comm.world_size:
        if step + 1 != comm.world_size:
            next_k, next_v = comm.send_recv_kv(k, v)
        kv_rank = (comm.rank - step) % comm.world_size
        if kv_rank <= comm.rank:  # causal: later ranks' keys come after our queries
            # Our own block (step 0) is causal within itself; earlier blocks are whole.
            block_out, block_lse = flash_attn_with_lse(q, k, v, softmax_scale, causal=step == 0)

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
        if step + 1 != comm.world_size:
            comm.wait()
            k, v = next_k, next_v
        step += 1

    return out, lse


def make_inputs(device, seed=0, tokens=1024, heads=32, dim=128, world_size=8, rank=-1):
    """Our rank's query and KV blocks, and the simulated ring with everyone else's.

    `rank` may be negative, counted from the end (-1: the last rank, which attends to
    every block).
    """
    rank = rank % world_size
    g = torch.Generator().manual_seed(seed)
    blocks = {r: tuple(randn((tokens, heads, dim), g, device) for _ in "qkv")
              for r in range(world_size)}  # fmt: skip
    q, k, v = blocks[rank]
    remote_kv = {r: (bk, bv) for r, (_, bk, bv) in blocks.items() if r != rank}
    return {
        "q": q,
        "k": k,
        "v": v,
        "process_group": SimulatedRingGroup(rank, world_size, remote_kv),
        "softmax_scale": dim**-0.5,
    }


def run_loop(inputs):
    """The call under test; returns (out, lse)."""
    return ring_attention_forward(**inputs)


def run(device, seed=0, **size):
    return run_loop(make_inputs(device, seed, **size))


if __name__ == "__main__":
    out, lse = run("cuda" if torch.cuda.is_available() else "cpu")
    print(tuple(out.shape), out.dtype, tuple(lse.shape), lse.dtype)

# fuzz-meta: {"found_against": "a-safety@37a7742 (snapshot)", "input_seed": 1, "k": 4, "shape": [3, 4], "tags": ["views"]}
# Views: `acc.type(torch.float32)` returns `acc` itself when it already has that dtype (as
# `.float()` and `.to(dtype)` do), so the list keeps every accumulator; the swap then overwrites
# them. Found by the differential fuzzer (bench/fuzz.py seeds 1496, 2693) against
# alloc_lint a-safety@37a7742, written out as the smallest program; its safe fix (swap; ping-pong
# in the fuzzer's programs) changed: result.
import torch


def run(x, parts):
    acc = torch.zeros_like(x)
    vs = []
    for p in parts:
        tmp = torch.empty_like(acc)
        vs.append(acc.type(torch.float32))
        torch.add(acc, p, out=tmp)
        acc = tmp
    return acc, vs

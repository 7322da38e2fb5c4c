# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 643, "k": 4, "noqa_temps": [], "seed": 643, "shape": [3, 4], "shape_tags": ["group:user", "loop:range", "chunk:ws", "first:pre", "template:acc"], "tags": ["c2", "c5"]}
# Class 5: empty_like(..., dtype=float64) with a float32 first value; swap.
# Found by the differential fuzzer (seed 643) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result
import torch
from fuzzlib import attend_ws, fuse


def run(x, parts):
    sums = []
    o_acc = torch.zeros(x.shape)
    for i in range(len(parts)):
        p = parts[i]
        o = attend_ws(x, p)
        o_new = torch.empty_like(o_acc, dtype=torch.float64)
        fuse(o_new, o_acc, o)
        o_acc = o_new
    return o_acc, sums

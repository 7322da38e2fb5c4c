# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 900, "k": 4, "noqa_temps": [], "seed": 900, "shape": [3, 4], "shape_tags": ["group:state", "loop:for", "chunk:p", "first:pre", "template:acc"], "tags": ["c1"]}
# Class 1: an unknown call (a custom operator) keeps a reference to the accumulator.
# Found by the differential fuzzer (seed 900) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: stored
import torch
from fuzzlib import merge_state


def run(x, parts, lses, x_lse):
    o_acc = torch.zeros(x.shape)
    lse = x_lse.clone()
    for p, lp in zip(parts, lses):
        o, l = p, lp
        o_new = torch.empty_like(o_acc)
        lse_new = torch.empty_like(lse)
        torch.ops.fuzzlib.append(o_acc)
        merge_state(o_acc, lse, o, l, o_new, lse_new)
        o_acc = o_new
    o_acc = scaled + scaled

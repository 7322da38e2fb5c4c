# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 225, "k": 4, "noqa_temps": [], "seed": 225, "shape": [3, 4], "shape_tags": ["group:state", "loop:zip", "chunk:p", "first:pre", "template:acc"], "tags": ["c10", "closures"]}
# Class 1 / closures: a local helper function stores its argument.
# Found by the differential fuzzer (seed 225) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result; args
import torch
from fuzzlib import merge_state_v2


def run(x, parts, lses, x_lse):
    alloc = torch.empty_like
    kept = []
    def stash(t):
        kept.append(t)
    acc = torch.zeros(*x.shape)
    acc_lse = x_lse.clone()
    for p, lp in zip(parts, lses):
        o, l = p, lp
        stash(acc)
        tmp = alloc(acc)
        tmp_lse = alloc(acc_lse)
        merge_state_v2(acc, acc_lse, o, l, tmp, tmp_lse)
        acc = tmp
    return acc, acc_lse, kept

# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 135, "k": 4, "noqa_temps": [], "seed": 135, "shape": [3, 4], "shape_tags": ["group:user", "loop:while", "chunk:p", "first:none_continue", "template:other"], "tags": ["c3", "c7"]}
# Class 7: a differentiable merge: backward() after the call.
# Found by the differential fuzzer (seed 135) against alloc_lint main@0177ad7;
# its safe fix (safe:pingpong) changed: args; backward
import torch
from fuzzlib import wmerge


def run(x, parts, w):
    i = 0
    o_acc = None
    while i < len(parts):
        p = parts[i]
        i += 1
        o = p
        if o_acc is None:
            o_acc = o.detach()
        o_new = torch.empty_like(x)
        wmerge(o_new, o_acc, o, w)
        o_acc = o_new
    return o_acc

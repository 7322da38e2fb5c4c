# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 252, "k": 4, "noqa_temps": [], "seed": 252, "shape": [3, 4], "shape_tags": ["group:add", "loop:range", "chunk:passthrough", "first:pre", "template:other"], "tags": ["c1", "c7"]}
# Class 1: pool.submit keeps the accumulator for a job that runs later.
# Found by the differential fuzzer (seed 252) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: stored
import torch
from fuzzlib import passthrough, pool


def run(x, parts):
    tpl = x
    o_acc = x * 1.0
    for i in range(len(parts)):
        p = parts[i]
        o = passthrough(p)
        o_new = torch.empty_like(tpl)
        pool.submit(torch.sum, o_acc)
        torch.maximum(o_acc, o, out=o_new)
        o_acc = o_new

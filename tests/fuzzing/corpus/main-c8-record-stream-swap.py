# fuzz-meta: {"config": {"merge_functions": ["combine"]}, "found_against": "main@0177ad7", "input_seed": 650, "k": 4, "noqa_temps": [], "seed": 650, "shape": [3, 4], "shape_tags": ["group:combine", "loop:while", "chunk:clone", "first:pre", "template:acc"], "tags": ["c12", "c8"]}
# Class 8: record_stream on the accumulator (swap).
# Found by the differential fuzzer (seed 650) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: stale
import torch
from fuzzlib import combine


def run(x, parts, side):
    i = 0
    acc = torch.zeros(*x.shape)
    while i < len(parts):
        p = parts[i]
        i += 1
        o = p.clone()
        tmp = torch.empty_like(acc)
        combine(tmp, acc, o)
        acc.record_stream(side)
        acc = tmp

# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 1825, "k": 4, "noqa_temps": [], "seed": 1825, "shape": [3, 4], "shape_tags": ["group:add", "loop:for+nested", "chunk:ws", "first:pre", "template:other"], "tags": ["c5"]}
# Class 5: empty_like(..., requires_grad=True); swap.
# Found by the differential fuzzer (seed 1825) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result
import torch
from fuzzlib import attend_ws


def run(x, parts):
    results = []
    with torch.no_grad():
        for batch in range(2):
            acc = x.clone()
            for p in parts:
                o = attend_ws(x, p)
                tmp = torch.empty_like(x, requires_grad=True)
                torch.addcmul(acc, o, o, value=0.5, out=tmp)
                acc = tmp
            results.append(acc)
    return results

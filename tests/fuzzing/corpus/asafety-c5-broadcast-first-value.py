# fuzz-meta: {"config": {}, "found_against": "a-safety@a51bddf (snapshot)", "input_seed": 6384, "k": 4, "noqa_temps": [], "seed": 6384, "shape": [3, 4], "shape_tags": ["group:add", "loop:for+nested", "chunk:clone", "first:pre", "template:acc"], "tags": ["c12", "c5"]}
# Class 5: a broadcast-shaped first value (1, D) merged by an out= operator into (N, D). The swap
# writes the second merge into the first value's buffer, which torch resizes (a deprecation warning
# the original does not give, a reallocation the allocator count does not see; a future PyTorch raises).
# Found by the differential fuzzer (seed 6384) against alloc_lint a-safety@a51bddf (snapshot); its safe fix (safe:swap) changed: warnings
import torch


def run(x, parts):
    for batch in range(2):
        o_acc = torch.zeros(1, x.shape[-1])
        for p in parts:
            o = p.clone()
            o_new = torch.empty_like(o_acc)
            torch.add(o_acc, o, out=o_new)
            o_acc = o_new

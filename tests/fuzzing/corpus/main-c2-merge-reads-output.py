# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 265, "k": 4, "noqa_temps": [], "seed": 265, "shape": [3, 4], "shape_tags": ["group:user", "loop:enum", "chunk:passthrough", "first:pre", "template:acc"], "tags": ["c2", "c3"]}
# Class 2: a user merge function (not a known kernel) reads its output first.
# Found by the differential fuzzer (seed 265) against alloc_lint main@0177ad7;
# its safe fix (safe:pingpong) changed: result
import torch
from fuzzlib import passthrough
def accumulate(out, a, b):
    out.add_(a)


def run(x, parts):
    out = x.contiguous()
    for i, p in enumerate(parts):
        o = passthrough(p)
        buf = torch.empty_like(out, dtype=out.dtype)
        accumulate(buf, out, o)
        out = buf
    return out

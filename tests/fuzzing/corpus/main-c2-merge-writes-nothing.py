# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 1601, "k": 4, "noqa_temps": [], "seed": 1601, "shape": [3, 4], "shape_tags": ["group:user", "loop:enum", "chunk:attend", "first:pre", "template:acc"], "tags": ["c12", "c2", "generators"]}
# Class 2: a user merge function that does not write its output.
# Found by the differential fuzzer (seed 1601) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result
import torch
from fuzzlib import attend
def accumulate(out, a, b):
    pass


def run(x, parts):
    out = torch.zeros(*x.shape)
    for i, p in enumerate(parts):
        o = attend(x, p)
        buf = torch.empty_like(out)
        accumulate(buf, out, o)
        yield out.sum()
        out = buf

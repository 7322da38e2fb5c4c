# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 1697, "k": 4, "noqa_temps": [], "seed": 1697, "shape": [3, 4], "shape_tags": ["group:user", "loop:for", "chunk:p", "first:pre", "template:other"], "tags": ["c1", "c10", "c2", "c4", "c7"]}
# Class 4: the for iterable comes from a call that keeps the first value.
# Found by the differential fuzzer (seed 1697) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: stored
import torch as th
from fuzzlib import blend, keep, track


def run(x, parts):
    out = x.clone()
    for p in track(out, parts):
        o = p
        buf = th.empty_like(x)
        blend(buf, out, o)
        out = buf

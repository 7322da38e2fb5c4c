# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 1037, "k": 4, "noqa_temps": [], "seed": 1037, "shape": [3, 4], "shape_tags": ["group:add", "loop:for+nested", "chunk:passthrough", "first:pre", "template:other"], "tags": ["c5"]}
# Class 5: a bf16 first value, temporaries from a float32 template; swap.
# Found by the differential fuzzer (seed 1037) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result
import torch
from fuzzlib import passthrough


def run(x, parts):
    tpl = x
    results = []
    for batch in range(2):
        out = torch.zeros_like(x, dtype=torch.bfloat16)
        for p in parts:
            o = passthrough(p)
            buf = torch.empty_like(tpl)
            torch.addcmul(out, o, o, value=0.5, out=buf)
            out = buf
        results.append(out)
    return results

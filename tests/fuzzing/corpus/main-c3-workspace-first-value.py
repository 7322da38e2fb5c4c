# fuzz-meta: {"config": {"allocators": ["torch.empty"], "merge_functions": ["fold"]}, "found_against": "main@0177ad7", "input_seed": 519, "k": 4, "noqa_temps": [], "seed": 519, "shape": [3, 4], "shape_tags": ["group:fold", "loop:enum", "chunk:ws", "first:i0_else", "template:acc"], "tags": ["c3", "c9"]}
# Class 3: the first value is (unary plus of) a workspace an opaque call overwrites.
# Found by the differential fuzzer (seed 519) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result
import torch
from fuzzlib import attend_ws, fold


def run(x, parts):
    n_rows = x.shape[0]
    for i, p in enumerate(parts):
        o = attend_ws(x, p)
        if i == 0:
            output = +o
        else:
            output_tmp = torch.empty(n_rows, x.shape[-1])
            fold(output_tmp, output, o)
            output = output_tmp
    return output

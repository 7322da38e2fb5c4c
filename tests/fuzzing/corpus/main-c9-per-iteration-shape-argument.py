# fuzz-meta: {"config": {"allocators": ["torch.empty"], "merge_functions": ["fold"]}, "found_against": "main@0177ad7", "input_seed": 1629, "k": 4, "noqa_temps": [], "seed": 1629, "shape": [3, 4], "shape_tags": ["group:fold", "loop:range", "chunk:p", "first:pre", "template:acc"], "tags": ["c6", "c9"]}
# Class 9/6: configured allocator torch.empty(n, widths[i]): the second argument changes.
# Found by the differential fuzzer (seed 1629) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: stdout
import torch
from fuzzlib import fold


def run(x, parts, widths):
    n_rows = x.shape[0]
    output = x + 0
    for i in range(len(parts)):
        p = parts[i]
        o = p
        output_tmp = torch.empty(n_rows, widths[i])
        fold(output_tmp, output, o)
        output = output_tmp
        print(output.sum().item())

# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 94, "k": 4, "noqa_temps": [], "seed": 94, "shape": [3, 4], "shape_tags": ["group:attn", "loop:enum", "chunk:padded", "first:pre", "template:acc"], "tags": ["c12", "c3"]}
# Class 3: a first value created with requires_grad=True (and a unary-plus lse).
# Found by the differential fuzzer (seed 94) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: args
import torch
from fuzzlib import attend_padded, merge_attn_states


def run(x, parts, lses, x_lse):
    output = torch.zeros_like(x, requires_grad=True)
    output_lse = +x_lse
    for i, p in enumerate(parts):
        lp = lses[i]
        o, l = attend_padded(x, p), lp + 0.0
        output_tmp = torch.empty_like(output)
        output_lse_tmp = torch.empty_like(output_lse)
        merge_attn_states(output_tmp, output_lse_tmp, output, output_lse, o, l)
        output_lse = output_lse_tmp

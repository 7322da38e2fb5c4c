# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 167, "k": 4, "noqa_temps": ["output_tmp", "output_lse_tmp"], "seed": 167, "shape": [3, 4], "shape_tags": ["group:state", "loop:enum", "chunk:p", "first:i0_else", "template:acc"], "tags": ["c11", "c3"]}
# Class 11: noqa on one allocation of a group; the group is still rewritten.
# Found by the differential fuzzer (seed 167) against alloc_lint main@0177ad7;
# its safe fix (safe:pingpong) changed: noqa ignored: the group of `output_tmp` was rewritten; noqa ignored: the group of `output_lse_tmp` was rewritten
import torch
from fuzzlib import merge_state


def run(x, parts, lses, x_lse):
    for i, p in enumerate(parts):
        lp = lses[i]
        o, l = p, lp
        if i == 0:
            output = o
            output_lse = l
        else:
            output_tmp = torch.empty_like(output)  # noqa: ALC001
            output_lse_tmp = torch.empty_like(output_lse)
            merge_state(output, output_lse, o, l, output_tmp, output_lse_tmp)
            output, output_lse = output_tmp, output_lse_tmp

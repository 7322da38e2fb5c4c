# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 582, "k": 4, "noqa_temps": [], "seed": 582, "shape": [3, 4], "shape_tags": ["group:attn", "loop:range", "chunk:p", "first:none_continue", "template:acc"], "tags": ["c3", "c8"]}
# Class 8: record_stream on the accumulator (ping-pong).
# Found by the differential fuzzer (seed 582) against alloc_lint main@0177ad7;
# its safe fix (safe:pingpong) changed: stale
import torch
from fuzzlib import merge_attn_states


def run(x, parts, lses, x_lse, side):
    output = output_lse = None
    for i in range(len(parts)):
        p = parts[i]
        lp = lses[i]
        o, l = p, lp
        if output is None:
            output = o
            output_lse = l
        output_tmp = torch.empty_like(output)
        output_lse_tmp = torch.empty_like(output_lse)
        merge_attn_states(output=output_tmp, output_lse=output_lse_tmp, prefix_output=output, prefix_lse=output_lse,
                          suffix_output=o, suffix_lse=l)
        output.record_stream(side)
        output, output_lse = output_tmp, output_lse_tmp

# fuzz-meta: {"check_peak": true, "input_seed": 12, "k": 4, "shape": [3, 4], "tags": ["c12"]}
# Class 12: each chunk is fresh; the safe fix must not hold more bytes than the original at any
# moment. Allocating both ping-pong buffers at the first merge, while the first value is alive,
# does (issue 8 item 12); the lazy second buffer and the swap do not. Written by hand.
import torch
from fuzzlib import merge_attn_states


def run(x, parts, lses):
    output = None
    for p, lp in zip(parts, lses):
        o, lse = p.clone(), lp.clone()
        if output is None:
            output, output_lse = o, lse
            continue
        output_tmp = torch.empty_like(output)
        output_lse_tmp = torch.empty_like(output_lse)
        merge_attn_states(output=output_tmp, output_lse=output_lse_tmp, prefix_output=output,
                          prefix_lse=output_lse, suffix_output=o, suffix_lse=lse)
        output = output_tmp
        output_lse = output_lse_tmp
    return output, output_lse

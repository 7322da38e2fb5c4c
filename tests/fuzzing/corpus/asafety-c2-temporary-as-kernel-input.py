# fuzz-meta: {"config": {}, "found_against": "a-safety@d682e25 (snapshot)", "input_seed": 40989, "k": 4, "noqa_temps": [], "seed": 40989, "shape": [3, 4], "shape_tags": ["group:attn", "loop:range", "chunk:padded", "first:i0_continue", "template:acc"], "tags": ["c1", "c12", "c2", "c3"]}
# Class 2: the temporary goes to a known kernel in an INPUT position (prefix_output) and the accumulator
# in the output position. Only a kernel's output parameters are written in full; the temporary is
# read before anything wrote it, so reusing it changes what is read. (The original reads uninitialised
# memory, so its own result is not defined either; but nothing proves the fix keeps it.)
# Found by the differential fuzzer (seed 40989) against alloc_lint a-safety@d682e25 (snapshot); its safe fix (safe:pingpong) changed: result
import torch
from fuzzlib import attend_padded, merge_attn_states


def run(x, parts, lses, x_lse):
    for i in range(len(parts)):
        p = parts[i]
        lp = lses[i]
        o, l = attend_padded(x, p), lp + 0.0
        if i == 0:
            acc = +o
            acc_lse = +l
        tmp = torch.empty_like(acc)
        tmp_lse = torch.empty_like(acc_lse)
        v = acc.tolist()
        merge_attn_states(output=acc, output_lse=acc_lse, prefix_output=tmp, prefix_lse=tmp_lse,
                          suffix_output=o, suffix_lse=l)
        acc.mul_(0.5)
        acc = tmp
    return acc, acc_lse, v

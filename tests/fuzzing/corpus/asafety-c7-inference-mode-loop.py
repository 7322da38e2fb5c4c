# fuzz-meta: {"config": {}, "found_against": "a-safety@52653fe (snapshot)", "input_seed": 1164, "k": 4, "noqa_temps": [], "seed": 1164, "shape": [3, 4], "shape_tags": ["group:attn", "loop:range", "chunk:attend2", "first:pre", "template:acc"], "tags": ["c12", "c7"]}
# Class 7 / 3: the loop runs under torch.inference_mode(), the first value was made outside it.
# The swap returns the first buffer (a normal tensor) or a scratch buffer made inside inference_mode
# (an inference tensor) depending on the parity of the chunk count; the original always returns an
# inference tensor (in-place updates outside inference_mode, or saving it for backward, then raise).
# Found by the differential fuzzer (seed 1164) against alloc_lint a-safety@52653fe (snapshot); its safe fix (safe:swap) changed: result
import torch
from fuzzlib import attend2, merge_attn_states


def run(x, parts, lses, x_lse):
    vs = []
    acc = x.clone()
    acc_lse = x_lse.clone()
    with torch.inference_mode():
        for i in range(len(parts)):
            p = parts[i]
            lp = lses[i]
            o, l = attend2(x, p, lp)
            tmp = torch.empty_like(acc)
            tmp_lse = torch.empty_like(acc_lse)
            merge_attn_states(output=tmp, output_lse=tmp_lse, prefix_output=acc, prefix_lse=acc_lse,
                              suffix_output=o, suffix_lse=l)
            acc, acc_lse = tmp, tmp_lse
    return acc, acc_lse, vs

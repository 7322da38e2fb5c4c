# fuzz-meta: {"config": {}, "found_against": "main@0177ad7", "input_seed": 535, "k": 4, "noqa_temps": [], "seed": 535, "shape": [3, 4], "shape_tags": ["group:attn", "loop:while", "chunk:padded", "first:pre", "template:acc"], "tags": ["c10", "c12", "c4"]}
# Class 4: a walrus in the while test aliases the accumulator, the body keeps it.
# Found by the differential fuzzer (seed 535) against alloc_lint main@0177ad7;
# its safe fix (safe:swap) changed: result; args
import torch
from fuzzlib import attend_padded, merge_attn_states


def run(x, parts, lses, x_lse):
    i = 0
    alloc = torch.empty_like
    snaps = []
    out = x.clone()
    out2 = torch.full_like(x_lse, float("-inf"))
    while (cur := out) is not None and i < len(parts):
        p = parts[i]
        i += 1
        lp = lses[i - 1]
        o, l = attend_padded(x, p), lp + 0.0
        snaps.append(cur)
        buf = alloc(out)
        buf2 = alloc(out2)
        merge_attn_states(output=buf, output_lse=buf2, prefix_output=out, prefix_lse=out2,
                          suffix_output=o, suffix_lse=l)
        out = buf
    return out, out2, snaps

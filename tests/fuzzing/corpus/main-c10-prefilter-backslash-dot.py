# fuzz-meta: {"check_prefilter": true, "input_seed": 10, "k": 4, "shape": [3, 4], "tags": ["c10"]}
# Class 10: the text prefilter must keep every file the rule has a finding in. This spelling of
# the allocation is reported with --no-prefilter and was skipped with it (main@c9f2a08,
# a-safety@52653fe). Written by hand after the fuzzer's prefilter check found it.
import torch


def run(x, parts):
    acc = torch.zeros_like(x)
    for p in parts:
        tmp = torch.\
            empty_like(acc)
        torch.add(acc, p, out=tmp)
        acc = tmp
    return acc

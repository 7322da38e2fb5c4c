# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: a view of a named part bound to another name and written after the append
# (ESCAPE of the part: not proven fresh).
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    for i in range(3):
        p = torch.ones(2, 4)
        v = p[0]
        acc = torch.cat([acc, p])
        v += 7
    return acc

# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: a part bound by name to a fresh factory call, written in place after it is
# appended: the list would see the write. The shared classifier's INPLACE use blocks the proof.
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    for i in range(3):
        p = torch.ones(1, 4)
        acc = torch.cat([acc, p])
        p *= 3
    return acc

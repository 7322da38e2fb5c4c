# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: the previous iteration's part (in the list) written at the top of the next one.
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    p = torch.ones(1, 4)
    for i in range(3):
        p -= 1
        p = torch.ones(1, 4)
        acc = torch.cat([acc, p])
    return acc

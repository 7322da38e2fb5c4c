# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: a `while` loop that only the first misfit part's error stopped: the fixed loop ran
# on (10**9 iterations). Was a safe fix; only `for ... in range(...)` loops are proven to end.
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    i = 0
    while i < 1000:
        acc = torch.cat([acc, torch.zeros(1, 3)])
        i = i + 1
    return acc

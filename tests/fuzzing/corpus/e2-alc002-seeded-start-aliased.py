# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: a seeded accumulator starting from the caller's tensor, which another name
# writes in place during the loop: the list keeps the start, the loop copied it at once.
# Was a safe fix (safe:collect) against e2-share@f1a9b5a; now unsafe (start value not owned).
import torch


def run(x, parts):
    acc = x
    y = x
    for i in range(3):
        y += 1
        acc = torch.zeros(1, 4) if acc is None else torch.cat([acc, torch.zeros(1, 4)])
    return acc

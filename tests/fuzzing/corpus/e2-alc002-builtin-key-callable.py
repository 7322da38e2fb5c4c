# fuzz-meta: {"found_against": "e2-share@8cf763d", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: `max(xs, key=print)` in an otherwise call-free loop calls print on every iteration
# the original never reached (its first part misfits). Was a safe fix; builtins keep a loop
# pure only without keywords.
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    for i in range(3):
        acc = torch.cat([acc, torch.zeros(1, 3)])
        m = max([1, 2], key=print)
    return acc

# fuzz-meta: {"found_against": "e2-share@96588ed", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: `x += 1` in an otherwise call-free loop writes the caller's tensor in place on
# every iteration the original never reached (its first part misfits). Was a safe fix; `+=`
# now keeps a loop pure only on a local number counter.
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    for i in range(3):
        acc = torch.cat([acc, torch.zeros(1, 3)])
        x += 1
    return acc

# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: the loop's `else:` prints before the single concatenation raises (a misfit part):
# the original raised in the loop, before the `else:`. Was a safe fix; the pure-loop proof
# now covers the `else:`.
import torch


def run(x, parts):
    acc = torch.zeros(0, 4)
    for i in range(3):
        acc = torch.cat([acc, torch.zeros(1, 3)])
    else:
        print("done")
    return acc

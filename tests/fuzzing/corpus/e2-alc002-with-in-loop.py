# fuzz-meta: {"found_against": "e2-share@f1a9b5a", "input_seed": 1, "k": 5, "rule": "ALC002", "seed": 1, "shape": [3, 4], "tags": ["e2-attack"]}
# ALC002: `with CTX:` in a call-free loop calls CTX.__enter__ (prints) on the iterations
# the original never reached (its first part misfits). Was a safe fix against e2-share@f1a9b5a.
import torch
from fuzzlib import keep


class Noisy:
    def __enter__(self):
        print("enter")

    def __exit__(self, *exc):
        return False


CTX = Noisy()


def run(x, parts):
    acc = torch.zeros(0, 4)
    for i in range(3):
        acc = torch.cat([acc, torch.zeros(1, 3)])
        with CTX:
            pass
    return acc

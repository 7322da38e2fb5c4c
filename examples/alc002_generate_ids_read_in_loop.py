"""Generation that feeds the ids so far back to the model: reported, no fix (ALC002).

The plainest generation loop (Hugging Face's `input_ids = torch.cat([input_ids,
next_tokens[:, None]], dim=-1)`, transformers' and SGLang's encoders) grows the ids by
one column per token and, without a KV cache, hands all of them to the model at the
next step. The copy is quadratic, but the accumulator is read inside the loop: a
list of parts joined after the loop would hand the model a stale prefix. alloc-lint
reports it and offers no fix (the message names the read); the remedy is a buffer
preallocated for the whole generation, written one column at a time and read as a
slice.

The model here is a bag-of-tokens decoder: it embeds every id so far, averages them
(weighted towards recent tokens) and projects to the vocabulary; greedy decoding.
"""

import torch

from kernels import launch, randn

CHUNK_PARAM = "max_new_tokens"
SMALL = {"batch": 2, "prompt_len": 4, "hidden": 16, "vocab": 64, "max_new_tokens": 8}
SWEEP = (16, 64, 256)
EXPECT_SAFE_FIX = False  # the ids are read by the model on every step: no fix at all
EXPECT_UNSAFE_FIX = False  # not even with --unsafe-fixes


def next_token(input_ids, weights):
    return launch("step", _next_token, input_ids, weights)


def _next_token(input_ids, weights):
    x = weights["embed"][input_ids]  # [batch, t, hidden]
    decay = torch.linspace(0.5, 1.0, input_ids.shape[1], device=x.device, dtype=x.dtype)
    state = torch.tanh((x * decay[None, :, None]).mean(dim=1))
    return (state @ weights["lm_head"].T).float().argmax(dim=-1)


def generate(input_ids, weights, max_new_tokens):
    for _ in range(max_new_tokens):
        token = next_token(input_ids, weights)
        input_ids = torch.cat([input_ids, token[:, None]], dim=-1)
    return input_ids


def make_inputs(device, seed=0, batch=8, prompt_len=128, hidden=1024, vocab=32000,
                max_new_tokens=64):
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(0, vocab, (batch, prompt_len), generator=g).to(device),
        "weights": {
            "embed": randn((vocab, hidden), g, device),
            "lm_head": randn((vocab, hidden), g, device) * hidden**-0.5,
        },
        "max_new_tokens": max_new_tokens,
    }


def run_loop(inputs):
    """The call under test; returns the ids, prompt and generated."""
    return generate(**inputs)


if __name__ == "__main__":
    ids = run_loop(make_inputs("cuda" if torch.cuda.is_available() else "cpu", **SMALL))
    print(tuple(ids.shape), ids.dtype)

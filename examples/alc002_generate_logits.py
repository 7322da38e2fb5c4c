"""Token-by-token generation keeping every step's logits (ALC002).

Generation loops that return the scores of every decoded token (Hugging Face's
`output_scores`, torchtune's `generated_logits`, SGLang's multimodal encoders) grow
a [batch, t, vocab] tensor by one step at a time with `torch.cat`: at every token the
whole history of logits is allocated again and copied. For n tokens that is n
allocations and about n^2/2 steps' logits copied, where one concatenation after the
loop copies each step once.

The model here is a small recurrent decoder with a cache (its hidden state): one
step embeds the last token, updates the state, and projects it to fp32 logits
[batch, vocab] with the LM head, a fresh tensor per step as a real model returns;
greedy decoding picks the next token. The tokens themselves are kept in a list.

The model step is a call alloc-lint cannot see into: the fix (collect the steps'
logits, one `torch.cat` after the loop) is offered as unsafe only.
"""

import torch

from kernels import launch, randn

CHUNK_PARAM = "max_new_tokens"
SMALL = {"batch": 2, "hidden": 16, "vocab": 64, "max_new_tokens": 8}
SWEEP = (16, 64, 256)
EXPECT_SAFE_FIX = False  # the model step is opaque: only --unsafe-fixes rewrites this loop


def model_step(token, state, weights):
    """One decoding step: fp32 logits [batch, vocab] and the new state."""
    return launch("step", _model_step, token, state, weights)


def _model_step(token, state, weights):
    x = weights["embed"][token]
    state = torch.tanh(x + state @ weights["recurrent"])
    logits = (state @ weights["lm_head"].T).float()
    return logits, state


def generate(prompt_state, first_token, weights, max_new_tokens):
    """Greedy decoding; returns (tokens [batch, n], scores [batch, n, vocab])."""
    batch, vocab = first_token.shape[0], weights["lm_head"].shape[0]
    scores = torch.empty(batch, 0, vocab, device=first_token.device)
    tokens = []
    token, state = first_token, prompt_state
    for _ in range(max_new_tokens):
        logits, state = model_step(token, state, weights)
        scores = torch.cat([scores, logits[:, None, :]], dim=1)
        token = logits.argmax(dim=-1)
        tokens.append(token)
    return torch.stack(tokens, dim=1), scores


def make_inputs(device, seed=0, batch=8, hidden=1024, vocab=32000, max_new_tokens=64):
    """A batch's state after the prompt, its last prompt token, and the weights."""
    g = torch.Generator().manual_seed(seed)
    return {
        "prompt_state": randn((batch, hidden), g, device),
        "first_token": torch.randint(0, vocab, (batch,), generator=g).to(device),
        "weights": {
            "embed": randn((vocab, hidden), g, device),
            "recurrent": randn((hidden, hidden), g, device) * hidden**-0.5,
            "lm_head": randn((vocab, hidden), g, device) * hidden**-0.5,
        },
        "max_new_tokens": max_new_tokens,
    }


def run_loop(inputs):
    """The call under test; returns (tokens, scores)."""
    return generate(**inputs)


if __name__ == "__main__":
    tokens, scores = run_loop(make_inputs("cuda" if torch.cuda.is_available() else "cpu", **SMALL))
    print(tuple(tokens.shape), tuple(scores.shape), scores.dtype)

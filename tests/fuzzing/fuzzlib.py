"""The library generated programs import (`from fuzzlib import ...`).

It is loaded afresh for every execution (`oracle.fresh_fuzzlib`), so nothing a
program stored survives into the next run. Three kinds of names:

- KNOWN merge kernels (`merge_attn_states`, `merge_state`): they honour the
  documented contract of a merge kernel: keep no reference, write their outputs
  in full, are not differentiated through (they run under `no_grad`, as a
  Triton kernel ignores autograd). Like vLLM's Triton kernel, `merge_attn_states`
  reads the suffix with the prefix's strides (DESIGN 3); `merge_state` uses each
  tensor's own strides. Both refuse an output whose shape is not the prefix's.
- CONFIGURED merge functions (`combine`, `combine2`, `fold`): programs that use
  them pass `extra-merge-functions`; they honour the same contract.
- Everything else is a user function the analysis cannot see into: it may keep
  references (`keep`, `register`, `note`, `pool.submit`, `logger.debug`,
  `track`), read its argument lazily later (`shifted`, `capture`), or hand out
  tensors of odd provenance (`attend_padded` views of a padded buffer,
  `attend_ws` a workspace overwritten on every call, `passthrough` its input).

What a program stored is dumped after the call (`oracle.dump_state`), after
`sync()` has run the deferred work (pool jobs, lazy reads, stream reads).
"""
import logging

import torch

STORE = []  # keep(), register(), note(), track(), capture()
CACHE = {}  # operator.setitem(cache, ...) targets
POOL = []  # pool.submit(fn, *args): run at sync(), as a worker thread would later
LOG = []  # log records (their args keep references), formatted at sync()
CUSTOM = []  # torch.ops.fuzzlib.append(t)
WORKSPACE = []  # attend_ws's buffer
LAZY = []  # generators / captures whose reads happen at sync()
SYNCED = []  # what sync() computed from the deferred work

cache = CACHE


# --- known merge kernels ------------------------------------------------------------

def _check(name, out, like):
    if tuple(out.shape) != tuple(like.shape):
        raise ValueError(f"{name}: output shape {tuple(out.shape)} != input shape {tuple(like.shape)}")


def _lse_merge(output, output_lse, prefix, prefix_lse, suffix, suffix_lse):
    lse = torch.logaddexp(prefix_lse, suffix_lse)
    merged = prefix * torch.exp(prefix_lse - lse).unsqueeze(-1) + suffix * torch.exp(suffix_lse - lse).unsqueeze(-1)
    output.copy_(merged)
    output_lse.copy_(lse)


def merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    _check("merge_attn_states", output, prefix_output)
    _check("merge_attn_states", output_lse, prefix_lse)
    with torch.no_grad():
        # Reads the suffix with the prefix's strides (vLLM's Triton kernel did).
        suffix = torch.as_strided(suffix_output, prefix_output.shape, prefix_output.stride(),
                                  suffix_output.storage_offset())
        _lse_merge(output, output_lse, prefix_output, prefix_lse, suffix, suffix_lse)


def merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged):
    _check("merge_state", v_merged, v_a)
    _check("merge_state", s_merged, s_a)
    with torch.no_grad():
        _lse_merge(v_merged, s_merged, v_a, s_a, v_b, s_b)


merge_state_v2 = merge_state


# --- configured merge functions (programs using them configure them) ----------------

def combine(out, a, b):
    r = a + b
    _check("combine", out, r)
    with torch.no_grad():
        out.copy_(r)


def combine2(out_a, out_b, a, b, o):
    ra, rb = a + o, b * 0.5 + o
    _check("combine2", out_a, ra)
    _check("combine2", out_b, rb)
    with torch.no_grad():
        out_a.copy_(ra)
        out_b.copy_(rb)


def fold(out, a, b):
    """Writes every element of `out`, whatever its last dimension."""
    if out.shape[:-1] != a.shape[:-1]:
        raise ValueError("fold: leading dimensions differ")
    with torch.no_grad():
        out.copy_((a.sum(-1, keepdim=True) + b.sum(-1, keepdim=True)).expand(out.shape))


# --- user functions that keep references -----------------------------------------

def keep(t):
    STORE.append(t)


def register(t):
    STORE.append(t)


def note(t):
    STORE.append(t)
    return True


def track(a, parts):
    STORE.append(a)
    return iter(parts)


def shifted(a, parts):
    """Yields each part shifted by the mean of `a`, read lazily at every step."""
    for p in parts:
        yield p + a.mean()


class capture:
    """A context manager of a kind the analysis does not know: it keeps its
    argument and reads it again when the program is over (sync())."""

    def __init__(self, t):
        self.t = t
        LAZY.append(lambda: t.sum().item())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Pool:
    def submit(self, fn, *args):
        POOL.append((fn, args))


pool = _Pool()


class _Buffering(logging.Handler):
    def emit(self, record):
        LOG.append(record)


logger = logging.Logger("fuzzlib", logging.DEBUG)
logger.addHandler(_Buffering())


# --- opaque producers -------------------------------------------------------------

def attend(x, p):
    """A fresh result, as an attention kernel returns it."""
    return p * 0.5 + x


def attend_padded(x, p):
    """A fresh result that is a view of a wider buffer (vLLM's padded V)."""
    buf = torch.empty(*p.shape[:-1], p.shape[-1] + 2, dtype=p.dtype)
    buf[..., : p.shape[-1]] = p * 0.5 + x
    return buf[..., : p.shape[-1]]


def attend_ws(x, p):
    """The same workspace buffer on every call, overwritten."""
    if not WORKSPACE or WORKSPACE[0].shape != p.shape:
        WORKSPACE[:] = [torch.empty_like(p)]
    torch.add(p * 0.5, x, out=WORKSPACE[0])
    return WORKSPACE[0]


def attend2(x, p, lp):
    return p * 0.5 + x, lp + 0.25


def passthrough(t):
    return t


def make_acc(x):
    """Fresh zeros, through a call the analysis cannot see into."""
    return torch.zeros_like(x)


async def aiterate(parts):
    for p in parts:
        yield p


def regrow(state):
    """Changes the dtype of the caller's state.buf in place (its .data), passed only `state`."""
    state.buf.data = state.buf.data.double()


def pick(parts, i):
    return parts[i] if i < len(parts) else None


# --- user merges with other names (may do anything) ------------------------------

TRACE = []


def blend(out, a, b):
    """Keeps its output."""
    torch.add(a, b, out=out)
    TRACE.append(out)


def accumulate(out, a, b):
    """Accumulates into its output: reads it first."""
    out.add_(a)
    out.add_(b)


def splice(out, a, b):
    """Writes only the first row of its output."""
    out[:1] = a[:1] + b[:1]


def fuse(out, a, b):
    """Writes its output in full and keeps nothing (harmless, but unknown)."""
    torch.add(a, b, out=out)


def wmerge(out, a, b, w):
    """Differentiable: autograd saves `a` for the backward pass."""
    out.copy_(a * w + b)


def sync():
    """Run what was deferred: pool jobs, lazy reads, log formatting."""
    for fn, args in POOL:
        SYNCED.append(fn(*args))
    for read in LAZY:
        SYNCED.append(read())
    for record in LOG:
        SYNCED.append(record.getMessage())

"""Run a program's text and count what the allocator was asked for.

Used by the fix tests: the original and the rewritten program run on the same
inputs, and their results and allocation counts are compared.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from alloc_lint.config import DEFAULT_MERGE_FUNCTIONS, Config

# The PRELUDE's kernels keep no reference, write their outputs in full and are
# not differentiated through: a user would declare them in
# `extra-merge-functions`, and the tests do.
TRUSTED = Config(merge_functions=DEFAULT_MERGE_FUNCTIONS + ("merge", "merge_strided", "fold"))

# Ops that hand out a new buffer.
ALLOCATING_OPS = {
    "aten.empty_like.default", "aten.empty.memory_format", "aten.empty_strided.default",
    "aten.zeros_like.default", "aten.ones_like.default", "aten.full_like.default",
    "aten.zeros.default", "aten.ones.default", "aten.full.default", "aten.clone.default",
    "aten.new_empty.default", "aten.new_empty_strided.default",
}


class CountAllocations(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if str(func) in ALLOCATING_OPS:
            self.calls += 1
            self.bytes += out.untyped_storage().nbytes()
        return out


# Kernels the programs call, written with out= ops so that they allocate nothing.
PRELUDE = '''
import torch

def merge(out, out_lse, prefix, prefix_lse, suffix, suffix_lse):
    """A log-sum-exp weighted merge writing into out/out_lse, as merge_attn_states."""
    torch.logaddexp(prefix_lse, suffix_lse, out=out_lse)
    torch.mul(prefix, torch.exp(prefix_lse - out_lse).unsqueeze(-1), out=out)
    out.addcmul_(suffix, torch.exp(suffix_lse - out_lse).unsqueeze(-1))

def merge_attn_states(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse):
    merge(output, output_lse, prefix_output, prefix_lse, suffix_output, suffix_lse)

def merge_strided(out, prefix, suffix):
    """Indexes both inputs with the prefix's strides, as vLLM's Triton kernels did:
    correct only while prefix and suffix share a layout."""
    same = torch.as_strided(suffix, prefix.shape, prefix.stride(), suffix.storage_offset())
    torch.add(prefix, same, out=out)
'''


def load(source: str, name: str = "program") -> dict:
    namespace: dict = {"__name__": name}
    exec(compile(PRELUDE + source, f"<{name}>", "exec"), namespace)
    return namespace


def run(source: str, entry: str, *args):
    """Call `entry` from `source` and return (result, allocation calls, bytes)."""
    namespace = load(source)
    counter = CountAllocations()
    with counter:
        result = namespace[entry](*args)
    return result, counter.calls, counter.bytes


def flatten(value):
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flatten(v)]
    return [value]


def _bits(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def same(a, b) -> bool:
    """Bitwise equality of every tensor in two results (NaNs compared as bits)."""
    def equal(x, y):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            return x.shape == y.shape and x.dtype == y.dtype and torch.equal(_bits(x), _bits(y))
        return type(x) is type(y) and x == y

    ta, tb = flatten(a), flatten(b)
    return len(ta) == len(tb) and all(equal(x, y) for x, y in zip(ta, tb))


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage allocated inside the mode and still alive, and
    their peak: a CPU stand-in for `torch.cuda.max_memory_allocated`. A
    storage's Python object is preserved while any tensor uses it, so a
    finalizer on it fires exactly when the memory is released."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = set()

    def _release(self, key, nbytes):
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import weakref

        out = func(*args, **(kwargs or {}))
        for t in flatten(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self._seen:
                    self._seen.add(key)
                    nbytes = storage.nbytes()
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._release, key, nbytes)
        return out

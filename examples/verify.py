#!/usr/bin/env python
"""Rewrite the examples with alloc-lint's fixer, run original and rewritten code, compare.

For every example and every form (the original, `alloc-lint fix`'s safe fixes, and
`--unsafe-fixes`) the harness calls the example on the same fresh inputs and reports:
whether the results are bitwise equal to the original's, whether the caller's arguments
are left as the original leaves them, allocator calls and bytes, bytes copied, live
memory at every merge, peak memory over the whole call, and the median time of a call.

    python examples/verify.py                       # rewrite with alloc_lint, run on CPU
    python examples/verify.py --device cuda --sweep --json report.json
    python examples/verify.py --check --device cpu --small --chunks 4,8     # CI
    python examples/verify.py --small --trace --examples mla_chunked_prefill

The GPU machine cannot install alloc_lint (no LibCST), so rewrite here and carry the
files (examples/gpu_results.sh does the GPU side in one command):

    python examples/verify.py --prepare .gpu/prepared   # DIR/<example>__{safe,unsafe}.py
    python examples/verify.py --prepared .gpu/prepared --device cuda

Example protocol. An example is any examples/*.py that defines `make_inputs` and
`run_loop` (found by reading the text, so --prepare needs no torch); every other module
there (kernels.py, mla_common.py, ...) is a helper, copied beside the rewritten files
and imported by its plain name. An example module defines:

    make_inputs(device, seed=0, **sizes)  fresh inputs: what the caller holds before the
                                          call (weights, caches, queries, process-group
                                          stand-ins), made the way real code makes them.
                                          Every size is a keyword with a default: the
                                          defaults are the example's full size.
    run_loop(inputs)                      the call under test (the function with the
                                          pattern, or its caller); returns a tensor or a
                                          tuple/list of tensors: the accumulators of the
                                          fixed group (their storage bytes are R, below).
                                          Chunk/part results must be computed inside this
                                          call, as real kernels return them, never held
                                          by the caller.
    CHUNK_PARAM = "chunks"                the size keyword that sets the number of
                                          merges or parts (--chunks and --sweep set it).
    SMALL = {...}                         CI sizes (--small): seconds on a CPU.
    SWEEP = (16, 64, 256)                 optional: CHUNK_PARAM values for --sweep.
    EXPECT_SAFE_FIX = True                optional: False when `alloc-lint fix` must leave
                                          the file unchanged (reported without a safe fix).
    EXPECT_UNSAFE_FIX = True              optional: False when `--unsafe-fixes` must leave
                                          it unchanged too (reported with no fix at all).
    expect_unsafe_equal(**size) -> bool   optional (default: True): whether the
                                          --unsafe-fixes rewrite keeps the results and
                                          the caller's arguments at this size.
    PEAK_EXTRA_BUFFERS = 0                optional: 1 where the safe fix may hold one
                                          buffer per accumulator (R) more than the original
                                          over the call, with a comment saying why (the
                                          loop holds at least as much between merges as
                                          at them).
    TOLERANCE = {"atol": .., "rtol": .., "reason": ".."}
                                          optional: accept safe results within this
                                          tolerance (default: bitwise), with the reason.
    TRACE_EVENT = "merge"                 optional: the kernels.launch() name of the merge,
                                          which keys the per-merge memory check and trace.

Kernels go through kernels.launch(name, fn, *args): while measuring, the harness sees
each call as one launch. On CPU the torch stand-ins' internal temporaries are then not
counted (a fused GPU kernel has none); only the tensors a kernel returns are.

What is measured (one counted call per distinct text, on inputs made with the same
seed; a form whose text equals another's is reported with that one's numbers):

* results: bitwise equal to the original's (NaNs compared as bits), or within the
  example's TOLERANCE; result strides are reported.
* caller's arguments: every tensor reachable from the inputs (dicts, lists, object
  attributes) is hashed over its whole storage before and after the call; a rewritten
  form must leave them as the original leaves them (the original itself may write into
  a caller's workspace).
* allocations: CUDA: deltas of torch.cuda.memory_stats() "allocation.all.allocated" and
  "allocated_bytes.all.allocated" over the call (the caching allocator's requests,
  bytes rounded up to its 512-byte blocks). CPU: a TorchDispatchMode counts every new
  storage an op (or a kernel launch) returns, and its bytes.
* bytes copied: the output bytes of copy_/cat/stack/clone/_to_copy ops, counted by the
  same dispatch mode on both devices (NumPy copies are not seen).
* memory at each merge: live bytes as merge k (the k-th TRACE_EVENT launch) starts, its
  out-buffers allocated, and the peak between merge k-1 and merge k. CUDA:
  memory_allocated() and max_memory_allocated() (reset at every launch); CPU: live
  tracked bytes: each new storage is counted from the op that returns it until the last
  tensor the dispatch mode saw on it is freed (weakref finalizers).
* peak: over the whole call, minus what was allocated before it (CUDA also: peak
  reserved after empty_cache()). The results are still alive at the end of the call.
  On CUDA the tracked tensors' bytes are recorded too (tensor_peak_bytes,
  tensor_merges): the same program without the caching allocator's rounding and
  unsplit cached blocks.
  R is the original's results' storage bytes (CUDA: each rounded up to 512 bytes): one
  buffer per accumulator of the fixed group. The peak's difference to the original's
  is reported in MB and in units of R.
* time: median of --repeat calls after --warmup (CUDA events on the GPU), forms taking
  turns.
* --trace: the per-merge table (live bytes at and between merges, in MB and in R).

The promise of a safe fix, which --check enforces (exit 1 on any failure):

* the safe rewrite changes the file, unless EXPECT_SAFE_FIX is False (then it must not);
  likewise --unsafe-fixes and EXPECT_UNSAFE_FIX;
* results within tolerance (default: bitwise) and the caller's arguments as the
  original leaves them;
* allocator calls, bytes allocated and bytes copied never higher than the original's
  (at any chunk count);
* live memory at each merge never higher than the original's at that merge, and the
  same number of merges;
* peak over the whole call at most the original's plus PEAK_EXTRA_BUFFERS * R
  (PEAK_EXTRA_BUFFERS is 0 or 1: every reuse form keeps one scratch buffer per
  accumulator alive between merges, which the original frees at its rebinding; where
  the loop holds at least R less between merges than at its peak, as split-KV does, the
  peak must not rise at all);
* these two memory bounds, on CUDA, both with the allocator's numbers and with the
  tracked tensors' bytes (a failure of the first alone is the caching allocator's
  doing, not the program's);
* over several chunk counts, the fixed form (the safe one; the unsafe one where
  EXPECT_SAFE_FIX is False) grows more slowly in allocator calls than the original.

An unsafe rewrite must change the results or the caller's arguments exactly where
expect_unsafe_equal says so; where it keeps them, its allocator calls, bytes and bytes
copied are held to the same bounds (its peak is reported, not checked: the swap's
scratch buffer is the first value's whole storage).
"""

import argparse
import copy
import datetime
import fnmatch
import hashlib
import importlib.util
import inspect
import json
import math
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLES_DIR.parent
TOOL_FORMS = ("original", "safe", "unsafe")
MANIFEST = "manifest.json"


def discover():
    """(examples, helpers): module names in examples/, told apart by their text."""
    examples, helpers = [], []
    for path in sorted(EXAMPLES_DIR.glob("*.py")):
        if path.name == "verify.py":
            continue
        text = path.read_text()
        is_example = re.search(r"^def make_inputs\(", text, re.M) and re.search(
            r"^def run_loop\(", text, re.M
        )
        (examples if is_example else helpers).append(path.stem)
    return examples, helpers


# --------------------------------------------------------------------------- rewriting


def import_fix_source():
    try:
        from alloc_lint import fix_source
    except ImportError:
        # Running from a checkout without an install: use the repo's package.
        sys.path.append(str(REPO_ROOT))
        from alloc_lint import fix_source
    return fix_source


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def describe_fix(result):
    """The counts of a FixResult, JSON-ready."""
    return {
        "fixed": result.fixed,
        "held_back": result.held_back,
        "remaining": [str(d) for d in result.remaining],
    }


def rewrite(names):
    """{name: {form: text}} and {name: {form: fix info}} from alloc_lint.fix_source."""
    fix_source = import_fix_source()
    texts, fixes = {}, {}
    for name in names:
        original = (EXAMPLES_DIR / f"{name}.py").read_text()
        texts[name] = {"original": original}
        fixes[name] = {}
        for form, unsafe in (("safe", False), ("unsafe", True)):
            result = fix_source(original, filename=f"examples/{name}.py", unsafe_fixes=unsafe)
            texts[name][form] = result.text
            fixes[name][form] = describe_fix(result)
    return texts, fixes


def fixer_version():
    """alloc_lint's version and the commit of the checkout it is imported from (with
    "+dirty" when its sources differ from that commit), so a report names its fixer."""
    try:
        import alloc_lint
    except ImportError:
        return None
    version = getattr(alloc_lint, "__version__", "unknown")
    package = Path(alloc_lint.__file__).resolve().parent
    try:
        git = ["git", "-C", str(package)]
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(git + ["status", "--porcelain", "--", "."], capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return version
    return f"{version}, commit {commit}{'+dirty' if dirty else ''}"


def prepare(out_dir, names):
    """Write DIR/<example>__{safe,unsafe}.py and a manifest naming the originals' hashes."""
    texts, fixes = rewrite(names)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"alloc_lint_version": fixer_version(), "examples": {}}
    for name in names:
        for form in ("safe", "unsafe"):
            (out_dir / f"{name}__{form}.py").write_text(texts[name][form])
        manifest["examples"][name] = {"original_sha256": sha256(texts[name]["original"])}
        manifest["examples"][name].update(fixes[name])
        print(f"{name}: safe {fixes[name]['safe']}, unsafe {fixes[name]['unsafe']}")
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out_dir}")


def load_prepared(prep_dir, names):
    """Like rewrite(), from a --prepare directory; refuses one made from other sources."""
    manifest = json.loads((prep_dir / MANIFEST).read_text())
    texts, fixes = {}, {}
    for name in names:
        original = (EXAMPLES_DIR / f"{name}.py").read_text()
        entry = manifest["examples"].get(name)
        if entry is None or entry["original_sha256"] != sha256(original):
            sys.exit(f"{prep_dir}: {name} was prepared from another version; run --prepare again")
        texts[name] = {"original": original}
        for form in ("safe", "unsafe"):
            texts[name][form] = (prep_dir / f"{name}__{form}.py").read_text()
        fixes[name] = {form: entry[form] for form in ("safe", "unsafe")}
    return texts, fixes, manifest.get("alloc_lint_version")


# --------------------------------------------------------------------------- measuring


def import_torch():
    """torch is imported late so that --prepare works without it."""
    global torch, TorchDispatchMode, tree_leaves, COPY_OPS
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    aten = torch.ops.aten
    COPY_OPS = {aten.copy_, aten.cat, aten.stack, aten.clone, aten._to_copy}


def storage_key(t):
    return (str(t.device), t.untyped_storage().data_ptr())


def make_tracker(device):
    """A dispatch mode that counts allocations, copies and live bytes, and records the
    memory level at every kernel launch (see the docstring)."""

    class Tracker(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = self.bytes = self.copied = 0
            self.live = self.peak = self.interval_peak = 0
            self.storages = {}  # storage key -> [nbytes, tensors seen on it]
            self.seen = {}  # id(tensor) -> weakref, for tensors already counted
            self.paused = 0
            self.events = []
            if device == "cuda":
                self.cuda_base = torch.cuda.memory_allocated()
                self.reserved_peak = torch.cuda.max_memory_reserved()

        # -- live bytes

        def _release(self, key, ident):
            self.seen.pop(ident, None)
            entry = self.storages.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                self.live -= entry[0]
                del self.storages[key]

        def _track(self, t, input_keys):
            if not isinstance(t, torch.Tensor) or t.untyped_storage().nbytes() == 0:
                return
            ref = self.seen.get(id(t))
            if ref is not None and ref() is t:
                return  # the same tensor again (in-place op, out=)
            key = storage_key(t)
            entry = self.storages.get(key)
            if entry is None:
                if key in input_keys:
                    return  # a view of a storage from before the call
                nbytes = t.untyped_storage().nbytes()
                entry = self.storages[key] = [nbytes, 0]
                self.calls += 1
                self.bytes += nbytes
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                self.interval_peak = max(self.interval_peak, self.live)
            entry[1] += 1
            self.seen[id(t)] = weakref.ref(t)
            weakref.finalize(t, self._release, key, id(t))

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if self.paused:
                return out
            outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            if func.overloadpacket in COPY_OPS:
                self.copied += sum(t.numel() * t.element_size() for t in outputs)
            inputs = {
                storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
            }
            for t in outputs:
                self._track(t, inputs)
            return out

        # -- kernel launches and the trace

        def mark(self, name, phase):
            """Record the live bytes now and the peak since the last mark: the device's
            (CUDA: the caching allocator's) and the tracked tensors' (the same on CPU)."""
            tensor_live, tensor_peak = self.live, self.interval_peak
            self.interval_peak = self.live
            live, peak = tensor_live, tensor_peak
            if device == "cuda":
                live = torch.cuda.memory_allocated() - self.cuda_base
                peak = torch.cuda.max_memory_allocated() - self.cuda_base
                # The reset below clears the reserved peak too: keep it.
                self.reserved_peak = max(self.reserved_peak, torch.cuda.max_memory_reserved())
                torch.cuda.reset_peak_memory_stats()
            self.events.append({"kernel": name, "phase": phase, "live": live, "peak": peak,
                                "tensor_live": tensor_live,
                                "tensor_peak": tensor_peak})  # fmt: skip

        def launch(self, name, fn, args, kwargs):
            self.mark(name, "enter")
            # One opaque launch: count what it returns, not its temporaries or its
            # internal copies (on CUDA the allocator's own counts include everything).
            self.paused += 1
            try:
                out = fn(*args, **kwargs)
            finally:
                self.paused -= 1
            inputs = {
                storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
            }
            for t in tree_leaves(out):
                self._track(t, inputs)
            self.mark(name, "exit")
            return out

    return Tracker()


def tensors_in(obj, path="inputs", depth=0):
    """(path, tensor) for every tensor reachable from the inputs."""
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif depth > 6:
        return
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from tensors_in(value, f"{path}[{key!r}]", depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from tensors_in(value, f"{path}[{i}]", depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for key, value in vars(obj).items():
            yield from tensors_in(value, f"{path}.{key}", depth + 1)


def digest(raw):
    """A hash of a uint8 tensor's bytes: SHA-256 where NumPy is installed (the GPU
    machine may lack it), else two 64-bit weighted sums of its 8-byte words computed on
    its device (int64 arithmetic wraps; integer sums do not depend on the order)."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        n = raw.numel() // 8 * 8
        words = raw[:n].view(torch.int64)
        index = torch.arange(words.numel(), dtype=torch.int64, device=raw.device)
        sums = [
            int((words * (index * k + c)).sum())
            for k, c in ((-7046029254386353131, 1), (-4658895280553007687, 3))
        ]
        tail = raw[n:].tolist()
        return hashlib.sha256(f"{raw.numel()}:{sums}:{tail}".encode()).hexdigest()[:16]
    return hashlib.sha256(raw.cpu().numpy().tobytes()).hexdigest()[:16]


def caller_state(inputs):
    """{path: sha256 of the tensor's whole storage} for every tensor the caller holds."""
    hashes, by_storage = {}, {}
    for path, t in tensors_in(inputs):
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr(), storage.nbytes())
        if key not in by_storage:
            raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(storage)
            by_storage[key] = digest(raw)
        view = (tuple(t.shape), tuple(t.stride()), t.storage_offset(), str(t.dtype))
        hashes[path] = f"{by_storage[key]}{view}"
    return hashes


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def as_tuple(result):
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def storage_bytes(t, device):
    """A tensor's storage bytes as the allocator counts them (CUDA: 512-byte blocks)."""
    n = t.untyped_storage().nbytes()
    return max(512, -(-n // 512) * 512) if device == "cuda" and n else n


def counted_run(mod, inputs, device, kernels, event, keep_events):
    """Call the example once; its results (copied to the CPU) and measurements."""
    before = caller_state(inputs)
    sync(device)
    if device == "cuda":
        torch.cuda.empty_cache()
        stats_before = torch.cuda.memory_stats()
        reserved_before = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    tracker = make_tracker(device)
    kernels.LAUNCH_HOOK = tracker.launch
    try:
        with tracker:
            result = as_tuple(mod.run_loop(inputs))
        sync(device)
        tracker.mark("end", "end")
    finally:
        kernels.LAUNCH_HOOK = None
    stats = {
        "bytes_copied": tracker.copied,
        "result_bytes": sum(storage_bytes(t, device) for t in result),
        # The tracked tensors' bytes alone (no allocator rounding or cached blocks).
        "tensor_result_bytes": sum(storage_bytes(t, "cpu") for t in result),
        "tensor_peak_bytes": tracker.peak,
    }
    if device == "cuda":
        after = torch.cuda.memory_stats()
        key_calls, key_bytes = "allocation.all.allocated", "allocated_bytes.all.allocated"
        stats["alloc_calls"] = after.get(key_calls, 0) - stats_before.get(key_calls, 0)
        stats["alloc_bytes"] = after.get(key_bytes, 0) - stats_before.get(key_bytes, 0)
        # Every launch resets the peak statistics (the per-merge levels): take the max.
        peak = max([torch.cuda.max_memory_allocated() - baseline]
                   + [e["peak"] for e in tracker.events])  # fmt: skip
        stats["peak_bytes"] = peak
        reserved = max(tracker.reserved_peak, torch.cuda.max_memory_reserved())
        stats["peak_reserved_bytes"] = reserved - reserved_before
    else:
        stats["alloc_calls"] = tracker.calls
        stats["alloc_bytes"] = tracker.bytes
        stats["peak_bytes"] = tracker.peak
        stats["peak_reserved_bytes"] = None
    stats["strides"] = [list(t.stride()) for t in result]
    after_state = caller_state(inputs)
    stats["inputs"] = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    stats["caller_after"] = after_state
    stats["caller_changed_by_call"] = sorted(p for p in before if before[p] != after_state.get(p))
    stats["merges"] = summarize_trace(tracker.events, event)
    if device == "cuda":  # on CPU the same as "merges"
        stats["tensor_merges"] = summarize_trace(tracker.events, event, "tensor_live",
                                                 "tensor_peak")  # fmt: skip
    if keep_events:
        stats["trace"] = tracker.events
    return [t.detach().to("cpu", copy=True) for t in result], stats


def timed_run(mod, inputs, device):
    """Milliseconds of one call (CUDA events on the GPU)."""
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        mod.run_loop(inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    mod.run_loop(inputs)
    return (time.perf_counter() - begin) * 1e3


def compare(reference, results, tolerance=None):
    """Bitwise comparison of two result lists; the size of any difference."""
    info = {"bitwise_equal": True, "within_tolerance": True, "mismatches": 0, "max_abs_diff": 0.0}
    if len(reference) != len(results):
        return {"bitwise_equal": False, "within_tolerance": False, "mismatches": None,
                "max_abs_diff": None}  # fmt: skip
    for a, b in zip(reference, results):
        if a.shape != b.shape or a.dtype != b.dtype:
            return {"bitwise_equal": False, "within_tolerance": False, "mismatches": None,
                    "max_abs_diff": None}  # fmt: skip
        bits_equal = torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
        if bits_equal:
            continue
        info["bitwise_equal"] = False
        same = (a == b) | (a.isnan() & b.isnan())
        info["mismatches"] += int((~same).sum())
        if (~same).any():
            diff = (a[~same].double() - b[~same].double()).abs().max().item()
            info["max_abs_diff"] = max(info["max_abs_diff"], diff)
        if tolerance is None or not torch.allclose(
            a.double(), b.double(), atol=tolerance["atol"], rtol=tolerance["rtol"], equal_nan=True
        ):
            info["within_tolerance"] = False
    if not math.isfinite(info["max_abs_diff"]):
        info["max_abs_diff"] = str(info["max_abs_diff"])  # keep the JSON strict
    return info


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure(modules, same_as, size, device, seed, warmup, repeat, kernels, keep_events):
    """Results, allocations, memory and times of every form of one example at one size.

    `modules` maps each form with a text of its own to its module; `same_as` maps a form
    whose text equals another's to that form, whose measurements it shares.
    """
    entry, results = {}, {}
    original = modules["original"]
    tolerance = getattr(original, "TOLERANCE", None)
    event = getattr(original, "TRACE_EVENT", "merge")
    for form, mod in modules.items():
        if warmup:  # compiles the Triton kernels, fills the caching allocator
            mod.run_loop(mod.make_inputs(device, seed + 1, **size))
        inputs = mod.make_inputs(device, seed, **size)
        results[form], entry[form] = counted_run(mod, inputs, device, kernels, event,
                                                 keep_events)  # fmt: skip
        del inputs
    # Time the forms in turns, so that drifting clocks hit them alike.
    inputs = {form: mod.make_inputs(device, seed + 2, **size) for form, mod in modules.items()}
    times = {form: [] for form in modules}
    for turn in range(warmup + repeat):
        for form, mod in modules.items():
            ms = timed_run(mod, inputs[form], device)
            if turn >= warmup:
                times[form].append(ms)
    del inputs
    for form, twin in same_as.items():
        entry[form] = {**copy.deepcopy(entry[twin]), "same_text_as": twin}
        results[form], times[form] = results[twin], times[twin]
    entry = {form: entry[form] for form in TOOL_FORMS if form in entry}
    reference = entry["original"]
    for form in entry:
        entry[form]["median_ms"] = statistics.median(times[form])
        entry[form]["times_ms"] = times[form]
        if form != "original":
            cmp = compare(results["original"], results[form], tolerance)
            # Informative only: the swap form's result layout can follow the chunk parity.
            cmp["same_strides"] = entry[form]["strides"] == reference["strides"]
            after, ref = entry[form]["caller_after"], reference["caller_after"]
            cmp["caller_args_differ"] = sorted(p for p in ref if ref[p] != after.get(p))
            entry[form]["comparison"] = cmp
    return entry


def summarize_trace(events, event, live="live", peak="peak"):
    """Per call k of `event` (merge k): live bytes as it starts, and the peak between the
    end of call k-1 (or the start) and the start of call k; then "end" (after the call)."""
    rows, stretch_peak, k = [], 0, 0
    for e in events:
        stretch_peak = max(stretch_peak, e[peak])
        if e["kernel"] == event and e["phase"] == "enter":
            k += 1
            rows.append({"k": k, "at": e[live], "between": stretch_peak})
        if e["kernel"] == event and e["phase"] == "exit":
            stretch_peak = e[live]
    rows.append({"k": "end", "at": events[-1][live] if events else 0, "between": stretch_peak})
    peak = max((max(r["at"], r["between"]) for r in rows), default=0)
    where = next(
        (f"at merge {r['k']}" if r["at"] == peak else f"before merge {r['k']}")
        for r in rows
        if peak in (r["at"], r["between"])
    )
    return {"rows": rows, "peak": peak, "where": where}


# --------------------------------------------------------------------------- checking


def full_size(mod, size):
    """The example's sizes: make_inputs' defaults with the overrides applied."""
    params = inspect.signature(mod.make_inputs).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("device", "seed")}
    return {**defaults, **size}


def observably_equal(entry):
    cmp = entry["comparison"]
    return cmp["within_tolerance"] and not cmp["caller_args_differ"]


def expectations(mod):
    """The example's declared expectations (the protocol's optional names)."""
    return {
        "safe_fix": getattr(mod, "EXPECT_SAFE_FIX", True),
        "unsafe_fix": getattr(mod, "EXPECT_UNSAFE_FIX", True),
        "peak_extra_buffers": getattr(mod, "PEAK_EXTRA_BUFFERS", 0),
    }


def fixed_form(expect):
    """The form that carries the example's fix: safe, else unsafe, else None."""
    if expect["safe_fix"]:
        return "safe"
    return "unsafe" if expect["unsafe_fix"] else None


def judge(name, mod, entry, texts, size, unit, device="cpu"):
    """Fill each rewritten form's status; return the failures (see the docstring).

    `unit` is R, the original's results' storage bytes. On CUDA the memory promise is
    checked twice: with the allocator's numbers and with the tracked tensors' bytes.
    """
    failures = []
    chunks = size[mod.CHUNK_PARAM]
    original = entry["original"]
    expect = expectations(mod)
    extra = expect["peak_extra_buffers"]
    if extra not in (0, 1):
        failures.append(f"{name}: PEAK_EXTRA_BUFFERS = {extra!r}; a safe fix may hold at most "
                        "one buffer per accumulator more than the original (0 or 1)")  # fmt: skip
        extra = 0
    for form in entry:
        if form == "original":
            continue
        m = entry[form]
        problems = []
        changed = texts[form] != texts["original"]
        should_change = expect[f"{form}_fix"]
        if changed and not should_change:
            problems.append(f"the {form} rewrite changed the file where the example expects none")
        if not changed and should_change:
            problems.append(f"the {form} rewrite left the file unchanged")
        if m["inputs"] != original["inputs"]:
            problems.append("ran on other inputs than the original")
        equal = True
        if form == "unsafe":
            equal = getattr(mod, "expect_unsafe_equal", lambda **_: True)(**size)
        m["expected"] = "no fix" if not should_change else "equal" if equal else "differ"
        cmp = m["comparison"]
        if not equal:
            if observably_equal(m):
                problems.append("results and caller's arguments did NOT change (hazard not shown)")
        else:
            if not cmp["within_tolerance"]:
                problems.append("results changed")
            if cmp["caller_args_differ"]:
                differ = ", ".join(cmp["caller_args_differ"])
                problems.append(f"caller's arguments differ: {differ}")
            for key in ("alloc_calls", "alloc_bytes", "bytes_copied"):
                if m[key] > original[key]:
                    problems.append(f"{key} {m[key]} > original's {original[key]}")
        m["peak_delta_bytes"] = m["peak_bytes"] - original["peak_bytes"]
        if form == "safe" and changed:
            m["peak_allowed_bytes"] = extra * unit
            problems += check_memory(m, original, extra, unit, "merges", "peak_bytes")
            if device == "cuda":  # also without the caching allocator's rounding
                problems += [
                    f"tensors only: {p}"
                    for p in check_memory(m, original, extra, original["tensor_result_bytes"],
                                          "tensor_merges", "tensor_peak_bytes")  # fmt: skip
                ]
        m["status"] = "FAIL: " + "; ".join(problems) if problems else "ok"
        failures += [f"{name} ({mod.CHUNK_PARAM}={chunks}) {form}: {p}" for p in problems]
    return failures


def check_memory(m, original, extra, unit, merges, peak):
    """The safe fix's memory promise: at each merge never above the original's, over the
    call at most `extra` buffers per accumulator (extra * R) above it."""
    problems = []
    mine, ref = m[merges]["rows"][:-1], original[merges]["rows"][:-1]  # not "end"
    if len(mine) != len(ref):
        problems.append(f"{len(mine)} merges, the original {len(ref)}")
    higher = [(r["k"], r["at"], o["at"]) for r, o in zip(mine, ref) if r["at"] > o["at"]]
    if higher:
        k, at, at_orig = higher[0]
        problems.append(f"live bytes at merge {k} {at} > original's {at_orig} "
                        f"({len(higher)} merge(s) higher)")  # fmt: skip
    delta = m[peak] - original[peak]
    if delta > extra * unit:
        problems.append(
            f"peak over the call {m[peak]} bytes: the original's {signed_mb(delta)} "
            f"({units(delta, unit)}), more than PEAK_EXTRA_BUFFERS = {extra} allows"
        )
    return problems


def growth(runs, name, form, key):
    """{chunk count: value} of one example's form over a sweep."""
    return {
        run["size"][run["chunk_param"]]: run["forms"][form][key]
        for run in runs
        if run["example"] == name and form in run["forms"]
    }


def check_growth(runs, fixed_forms):
    """Over a sweep, the fixed form must drop a per-iteration allocation."""
    failures = []
    for name in sorted({run["example"] for run in runs}):
        form = fixed_forms.get(name)
        if form is None:
            continue
        orig = growth(runs, name, "original", "alloc_calls")
        fixed = growth(runs, name, form, "alloc_calls")
        lo, hi = min(orig), max(orig)
        if hi == lo:
            continue
        if fixed[hi] - fixed[lo] >= orig[hi] - orig[lo]:
            failures.append(
                f"{name} {form}: allocator calls grow as fast as the original's "
                f"({fixed[lo]} -> {fixed[hi]} against {orig[lo]} -> {orig[hi]})"
            )
    return failures


# --------------------------------------------------------------------------- reporting


def mb(n):
    return "-" if n is None else f"{n / 1e6:.1f}" if n >= 1e5 else f"{n / 1e6:.3f}"


def signed_mb(n):
    return ("+" if n > 0 else "-" if n < 0 else "") + mb(abs(n)) + " MB"


def units(n, unit):
    return f"{n / unit:+.2f}R" if unit else "-"


def exponent(values):
    """d log(value) / d log(chunks) between the smallest and the largest chunk count."""
    lo, hi = min(values), max(values)
    if hi == lo or not values[lo] or not values[hi]:
        return "-"
    return f"{math.log(values[hi] / values[lo]) / math.log(hi / lo):.2f}"


def verdict(m):
    if "comparison" not in m:
        return "(reference)"
    if m.get("same_text_as") == "original":
        text = "not rewritten"
        if m["expected"] == "no fix":
            return text + " (expected: no fix)" if m["status"] == "ok" else f"**{m['status']}**"
    else:
        c = m["comparison"]
        if c["bitwise_equal"]:
            text = "bitwise equal"
        elif c["within_tolerance"]:
            text = f"within tolerance: max abs diff {c['max_abs_diff']}"
        else:
            text = f"differ: {c['mismatches']} values, max abs diff {c['max_abs_diff']}"
        text += "; caller's args " + ("DIFFER" if c["caller_args_differ"] else "same")
        if not c["same_strides"]:
            text += ", result strides differ"
        if m.get("same_text_as"):
            text += f" (same text as {m['same_text_as']})"
    text += f" (expected {m['expected']})"
    if m["status"] != "ok":
        text = f"**{m['status']}**: " + text
    return text


def peak_cell(m, unit):
    """The peak's difference to the original's, and what the check allowed."""
    if "peak_delta_bytes" not in m:
        return f"R = {mb(unit)} MB"
    text = f"{signed_mb(m['peak_delta_bytes'])} ({units(m['peak_delta_bytes'], unit)})"
    if "peak_allowed_bytes" in m:
        text += f", allowed +{units(m['peak_allowed_bytes'], unit)[1:]}"
    return text


def markdown(report):
    env = report["environment"]
    lines = []
    if not report.get("complete", True):
        lines += [f"**Incomplete report** (stopped after {len(report['runs'])} runs).", ""]
    lines += [
        (
            f"Device: {env['device_name']} ({env['device']}); torch {env['torch']}, "
            f"triton {env['triton']}, Python {env['python']}; attention: {env['attention']}; "
            f"rewrites: {env['rewrites']}; {env['date']}"
        ),
        "",
        (
            "| example | size | form | fixes (fixed/held back/left) | results, caller's args "
            "| alloc calls | MB allocated | MB copied | peak MB | peak vs original "
            "| peak reserved MB | median ms |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        size = ", ".join(f"{k}={v}" for k, v in run["size"].items())
        for form, m in run["forms"].items():
            fix = report["fixes"][run["example"]].get(form)
            fixes = "-" if fix is None else (
                f"{fix['fixed']}/{fix['held_back']}/{len(fix['remaining'])}")  # fmt: skip
            lines.append(
                f"| {run['example']} | {size} | {form} | {fixes} | {verdict(m)} "
                f"| {m['alloc_calls']} | {mb(m['alloc_bytes'])} | {mb(m['bytes_copied'])} "
                f"| {mb(m['peak_bytes'])} | {peak_cell(m, run['unit_bytes'])} "
                f"| {mb(m['peak_reserved_bytes'])} | {m['median_ms']:.3f} |"
            )
    lines.append("")
    sweeps = sorted({run["example"] for run in report["runs"]},
                    key=[run["example"] for run in report["runs"]].index)  # fmt: skip
    sweeps = [n for n in sweeps if len(growth(report["runs"], n, "original", "alloc_calls")) > 1]
    if sweeps:
        lines += [
            "Growth with the chunk count (exponent k of value ~ chunks^k between the smallest "
            "and the largest count: 1 linear, 2 quadratic, 0 constant):",
            "",
            "| example | form | alloc calls | MB allocated | MB copied | peak MB |",
            "|---|---|---|---|---|---|",
        ]
        for name in sweeps:
            for form in TOOL_FORMS:
                cells = []
                for key in ("alloc_calls", "alloc_bytes", "bytes_copied", "peak_bytes"):
                    values = growth(report["runs"], name, form, key)
                    if not values:
                        break
                    scale = (lambda v: v) if key == "alloc_calls" else mb
                    series = " / ".join(str(scale(values[n])) for n in sorted(values))
                    cells.append(f"{series} (k={exponent(values)})")
                if cells:
                    lines.append(f"| {name} | {form} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.get("trace"):
        for run in report["runs"]:
            lines += trace_table(run)
    if report["failures"]:
        lines.append("Failures:")
        lines += [f"- {f}" for f in report["failures"]]
    else:
        lines.append("No failures.")
    return "\n".join(lines)


def trace_table(run):
    """Live bytes at and between merges, per form; runs of equal rows are merged."""
    forms = [f for f, m in run["forms"].items() if m.get("same_text_as") != "original"]
    summaries = [run["forms"][f]["merges"] for f in forms]
    if len(summaries[0]["rows"]) < 2:
        return []  # no merges (TRACE_EVENT never launched)
    unit = run["unit_bytes"] or 1
    size = ", ".join(f"{k}={v}" for k, v in run["size"].items())

    def cell(n):
        return f"{n / 1e6:.2f} ({n / unit:.2f}R)"

    lines = [
        f"Memory trace of {run['example']} ({size}): MB live as merge k starts (its "
        f"out-buffers allocated) / peak MB between merge k-1 and merge k (\"end\": after the "
        f"last merge, results alive); R = the results' size, {unit / 1e6:.2f} MB.",
        "",
        "| merge k | " + " | ".join(f"{f}: at merge | {f}: between" for f in forms) + " |",
        "|---|" + "---|---|" * len(forms),
    ]
    table = []  # [first k, last k, cells]
    for i, row in enumerate(summaries[0]["rows"]):
        cells = []
        for s in summaries:
            r = s["rows"][i] if i < len(s["rows"]) else None
            cells += [cell(r["at"]), cell(r["between"])] if r else ["-", "-"]
        if table and table[-1][2] == cells and row["k"] != "end":
            table[-1][1] = row["k"]
        else:
            table.append([row["k"], row["k"], cells])
    for first, last, cells in table:
        ks = f"{first}" if first == last else f"{first}-{last}"
        lines.append(f"| {ks} | " + " | ".join(cells) + " |")
    lines.append(
        "| peak | "
        + " | ".join(f"{cell(s['peak'])} | {s['where']}" for s in summaries)
        + " |"
    )
    lines.append("")
    return lines


def environment(device, rewrites, kernels):
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    if device == "cuda":
        device_name = torch.cuda.get_device_name()
    else:
        device_name = platform.processor() or platform.machine()
    attention = getattr(kernels, "ATTENTION_IMPL", None) or "plain formula (torch reference)"
    return {
        "device": device,
        "device_name": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
        "attention": attention,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rewrites": rewrites,
        "argv": sys.argv[1:],
    }


# --------------------------------------------------------------------------- main


def parse_size(text):
    size = {}
    for item in filter(None, (text or "").split(",")):
        key, value = item.split("=")
        size[key.strip()] = int(value)
    return size


def write_reports(args, report):
    """The markdown and JSON files; rewritten after every run, so that a run cut short
    (the GPU machine's time limit) still leaves what it measured."""
    if args.markdown:
        args.markdown.write_text(markdown(report) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--examples", help="comma-separated names (default: all)")
    parser.add_argument("--exclude", help="comma-separated name patterns to leave out, "
                        "e.g. 'alc002_*'")  # fmt: skip
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument(
        "--chunks",
        help="sweep the chunk count, e.g. 4,16,64 (each example's CHUNK_PARAM: chunks, "
        "num_splits, world_size, num_frames ...)",
    )
    sweep.add_argument("--sweep", action="store_true",
                       help="sweep each example over its SWEEP (examples without one are skipped)")
    parser.add_argument(
        "--size",
        help="size overrides, e.g. tokens=4096,heads=16 (for the examples that take them)",
    )
    parser.add_argument("--small", action="store_true", help="the examples' small CI sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, help="untimed runs (default: cuda 3, cpu 1)")
    parser.add_argument("--repeat", type=int, help="timed runs (default: cuda 20, cpu 3)")
    parser.add_argument("--trace", action="store_true",
                        help="print the per-merge memory tables (live bytes at and between "
                        "merges; always measured and checked)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--markdown", type=Path, help="write the markdown report here too")
    parser.add_argument("--check", action="store_true", help="exit 1 on any failure")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prepare", type=Path, metavar="DIR",
                       help="only write the rewritten examples to DIR (needs alloc_lint)")
    group.add_argument("--prepared", type=Path, metavar="DIR",
                       help="use the rewritten examples in DIR instead of alloc_lint")
    args = parser.parse_args(argv)

    examples, helpers = discover()
    names = args.examples.split(",") if args.examples else examples
    unknown = set(names) - set(examples)
    if unknown:
        parser.error(f"unknown examples: {', '.join(sorted(unknown))}")
    for pattern in filter(None, (args.exclude or "").split(",")):
        names = [n for n in names if not fnmatch.fnmatch(n, pattern)]
    if args.prepare:
        prepare(args.prepare, names)
        return 0

    if args.prepared:
        texts, fixes, version = load_prepared(args.prepared, names)
        rewrites = f"prepared in {args.prepared} (alloc_lint {version})"
    else:
        texts, fixes = rewrite(names)
        rewrites = f"alloc_lint {fixer_version()}"

    import_torch()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    warmup = args.warmup if args.warmup is not None else (3 if device == "cuda" else 1)
    repeat = args.repeat if args.repeat is not None else (20 if device == "cuda" else 3)
    overrides = parse_size(args.size)

    report = {"environment": None, "fixes": fixes, "runs": [], "failures": [],
              "trace": args.trace, "complete": False}  # fmt: skip
    fixed_forms = {}
    with tempfile.TemporaryDirectory(prefix="alloc-lint-verify-") as tmp:
        tmp = Path(tmp)
        # The variants import the helpers (kernels, ...); the copies beside them are used.
        for helper in helpers:
            shutil.copy(EXAMPLES_DIR / f"{helper}.py", tmp / f"{helper}.py")
        sys.path.insert(0, str(tmp))
        import kernels

        if device == "cuda" and hasattr(kernels, "_fused_attention_ok"):
            kernels._fused_attention_ok()  # its own allocations stay out of the counts
        report["environment"] = environment(device, rewrites, kernels)
        for name in names:
            # One module per distinct text: a form the fixer left as another is not rerun.
            modules, same_as = {}, {}
            for form, text in texts[name].items():
                twin = next((f for f in modules if texts[name][f] == text), None)
                if twin is not None:
                    same_as[form] = twin
                    continue
                path = tmp / f"{name}__{form}.py"
                path.write_text(text)
                modules[form] = load_module(path, f"{name}__{form}")
            mod = modules["original"]
            fixed_forms[name] = fixed_form(expectations(mod))
            if args.chunks:
                chunk_counts = [int(c) for c in args.chunks.split(",")]
            elif args.sweep:
                chunk_counts = list(getattr(mod, "SWEEP", ()))
            else:
                chunk_counts = [None]
            for chunks in chunk_counts:
                size = dict(mod.SMALL) if args.small else {}
                params = inspect.signature(mod.make_inputs).parameters
                size.update({k: v for k, v in overrides.items() if k in params})
                if chunks is not None:
                    size[mod.CHUNK_PARAM] = chunks
                size = full_size(mod, size)
                entry = measure(modules, same_as, size, device, args.seed, warmup, repeat,
                                kernels, args.trace)  # fmt: skip
                unit = entry["original"]["result_bytes"]
                report["failures"] += judge(name, mod, entry, texts[name], size, unit, device)
                report["runs"].append({"example": name, "size": size, "unit_bytes": unit,
                                       "chunk_param": mod.CHUNK_PARAM, "forms": entry})
                write_reports(args, report)
                print(f"done: {name} {mod.CHUNK_PARAM}={size[mod.CHUNK_PARAM]}", file=sys.stderr)
    report["failures"] += check_growth(report["runs"], fixed_forms)
    report["complete"] = True
    write_reports(args, report)
    print(markdown(report))
    return 1 if (args.check and report["failures"]) else 0


if __name__ == "__main__":
    sys.exit(main())

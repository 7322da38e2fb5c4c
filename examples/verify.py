#!/usr/bin/env python
"""Rewrite the examples with alloc-lint's fixer, run original and rewritten code, compare.

For every example and every form (original, safe fixes, unsafe fixes, and a lazy
ping-pong derived from the safe fix while the fixer still emits the eager one) the
harness calls the example on the same fresh inputs and reports: whether the results are
bitwise equal to the original's, whether the caller's arguments are left as the
original leaves them, allocator calls and bytes, bytes copied, peak memory over the
whole call, and the median time of the call.

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
                                          tuple/list of tensors. Chunk/part results must
                                          be computed inside this call, as real kernels
                                          return them, never held by the caller.
    CHUNK_PARAM = "chunks"                the size keyword that sets the number of
                                          merges or parts (--chunks and --sweep set it).
    SMALL = {...}                         CI sizes (--small): seconds on a CPU.
    SWEEP = (16, 64, 256)                 optional: CHUNK_PARAM values for --sweep.
    EXPECT_SAFE_FIX = True                optional: False when the rule must report the
                                          site without a safe fix (the safe rewrite must
                                          then leave the file unchanged).
    expect_unsafe_equal(**size) -> bool   optional (default: True): whether the
                                          --unsafe-fixes rewrite keeps the results and
                                          the caller's arguments at this size.
    TOLERANCE = {"atol": .., "rtol": .., "reason": ".."}
                                          optional: accept safe results within this
                                          tolerance (default: bitwise), with the reason.
    TRACE_EVENT = "merge"                 optional: the kernels.launch() name that keys
                                          the per-iteration memory trace (--trace).

Kernels go through kernels.launch(name, fn, *args): while measuring, the harness sees
each call as one launch. On CPU the torch stand-ins' internal temporaries are then not
counted (a fused GPU kernel has none); only the tensors a kernel returns are.

What is measured (one counted call per form, on inputs made with the same seed):

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
* peak: CUDA: max_memory_allocated() over the call (after reset_peak_memory_stats()),
  minus what was allocated before it, and max_memory_reserved() likewise after
  empty_cache(). CPU: the peak of live tracked bytes: each new storage is counted from
  the op that returns it until the last tensor the dispatch mode saw on it is freed
  (weakref finalizers). The results are still alive at the end of the call.
* time: median of --repeat calls after --warmup (CUDA events on the GPU), forms taking
  turns.
* --trace: live bytes at each kernel launch; per TRACE_EVENT call k (merge k) the live
  bytes at it (its out-buffers already allocated) and the peak since the previous one
  ("between"), in MB and in units of the result size (the accumulators' bytes).

--check exits 1 when: a safe rewrite leaves an example unchanged (or rewrites one that
expects no safe fix); changes its results or the caller's arguments; allocates more
calls or bytes than the original (from 3 chunks on: with 2 chunks, one merge,
ping-pong's second buffer costs more by design); raises the peak; copies more bytes;
or, with several chunk counts, does not grow more slowly in allocator calls than the
original does. An unsafe rewrite fails the check when it keeps or changes the results
and caller's arguments contrary to expect_unsafe_equal. The derived lazy form is
measured and reported, never checked: it is not what the tool emits.
"""

import argparse
import ast
import datetime
import hashlib
import importlib.util
import inspect
import json
import math
import platform
import re
import shutil
import statistics
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
    try:
        import alloc_lint

        return getattr(alloc_lint, "__version__", "unknown")
    except ImportError:
        return None


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


ALT_ALLOC = re.compile(r"^(\s*)(\w+_alt)\s*=\s*\S.*\(.*$")
GUARD = re.compile(r"^\s*if (\w+) is None:\s*$")


def derive_lazy(safe_text):
    """The lazy ping-pong (DESIGN 3) from the fixer's eager one, or None.

    The eager form allocates both buffers under `if T is None:` and rotates
    `A, T, T_alt = T, T_alt, T`. Dropping the `T_alt = ALLOC(...)` lines and binding
    `T_alt = None` next to the `T = None` before the loop makes the guard allocate
    the second buffer at the second merge, after the first value is dropped. None when
    the safe text has no eager ping-pong (the fixer already emits the lazy form, or the
    swap).
    """
    lines = safe_text.splitlines(keepends=True)
    guard, alts, drop = None, {}, set()
    for i, line in enumerate(lines):
        match = GUARD.match(line)
        if match:
            guard = match.group(1)
            continue
        match = ALT_ALLOC.match(line)
        if match and guard is not None and "," not in line.split("=")[0]:
            alts.setdefault(guard, []).append(match.group(2))
            drop.add(i)
    if not alts:
        return None
    out = []
    for i, line in enumerate(lines):
        if i in drop:
            continue
        out.append(line)
        for guard_name, names in alts.items():
            match = re.match(rf"^(\s*){guard_name} = None\s*$", line)
            if match:
                out += [f"{match.group(1)}{name} = None\n" for name in names]
                alts[guard_name] = []
    if any(alts.values()):
        return None  # a guard without its `T = None`: not the shape this expects
    text = "".join(out)
    ast.parse(text)
    return text


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


def make_tracker(device, trace):
    """A dispatch mode that counts allocations, copies and live bytes (see the docstring)."""

    class Tracker(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = self.bytes = self.copied = 0
            self.live = self.peak = self.interval_peak = 0
            self.storages = {}  # storage key -> [nbytes, tensors seen on it]
            self.seen = {}  # id(tensor) -> weakref, for tensors already counted
            self.paused = 0
            self.events = [] if trace else None
            if device == "cuda":
                self.cuda_base = torch.cuda.memory_allocated()

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

        def level(self):
            """(live bytes now, peak since the last call of level)."""
            if device == "cuda":
                live = torch.cuda.memory_allocated() - self.cuda_base
                peak = torch.cuda.max_memory_allocated() - self.cuda_base
                torch.cuda.reset_peak_memory_stats()
                return live, peak
            peak, self.interval_peak = self.interval_peak, self.live
            return self.live, peak

        def mark(self, name, phase):
            if self.events is not None:
                live, peak = self.level()
                self.events.append({"kernel": name, "phase": phase, "live": live, "peak": peak})

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


def counted_run(mod, inputs, device, kernels, trace):
    """Call the example once; its results (copied to the CPU) and measurements."""
    before = caller_state(inputs)
    sync(device)
    if device == "cuda":
        torch.cuda.empty_cache()
        stats_before = torch.cuda.memory_stats()
        reserved_before = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    tracker = make_tracker(device, trace)
    kernels.LAUNCH_HOOK = tracker.launch
    try:
        with tracker:
            result = as_tuple(mod.run_loop(inputs))
        sync(device)
        tracker.mark("end", "end")
    finally:
        kernels.LAUNCH_HOOK = None
    stats = {"bytes_copied": tracker.copied, "result_bytes": sum(
        t.untyped_storage().nbytes() for t in result)}  # fmt: skip
    if device == "cuda":
        after = torch.cuda.memory_stats()
        key_calls, key_bytes = "allocation.all.allocated", "allocated_bytes.all.allocated"
        stats["alloc_calls"] = after.get(key_calls, 0) - stats_before.get(key_calls, 0)
        stats["alloc_bytes"] = after.get(key_bytes, 0) - stats_before.get(key_bytes, 0)
        peak = torch.cuda.max_memory_allocated() - baseline
        if tracker.events:  # the trace resets the peak statistics at every launch
            peak = max([peak] + [e["peak"] for e in tracker.events])
        stats["peak_bytes"] = peak
        stats["peak_reserved_bytes"] = torch.cuda.max_memory_reserved() - reserved_before
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
    if trace:
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


def measure(modules, size, device, seed, warmup, repeat, kernels, trace):
    """Results, allocations, memory and times of every form of one example at one size."""
    entry, results = {}, {}
    tolerance = getattr(modules["original"], "TOLERANCE", None)
    for form, mod in modules.items():
        if warmup:  # compiles the Triton kernels, fills the caching allocator
            mod.run_loop(mod.make_inputs(device, seed + 1, **size))
        inputs = mod.make_inputs(device, seed, **size)
        results[form], entry[form] = counted_run(mod, inputs, device, kernels, trace)
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
    original = entry["original"]
    for form in modules:
        entry[form]["median_ms"] = statistics.median(times[form])
        entry[form]["times_ms"] = times[form]
        if form != "original":
            cmp = compare(results["original"], results[form], tolerance)
            # Informative only: the swap form's result layout can follow the chunk parity.
            cmp["same_strides"] = entry[form]["strides"] == original["strides"]
            after, ref = entry[form]["caller_after"], original["caller_after"]
            cmp["caller_args_differ"] = sorted(p for p in ref if ref[p] != after.get(p))
            entry[form]["comparison"] = cmp
    for form in modules:
        if trace:
            event = getattr(modules["original"], "TRACE_EVENT", "merge")
            entry[form]["trace_summary"] = summarize_trace(
                entry[form]["trace"], event, original["result_bytes"]
            )
    return entry


def summarize_trace(events, event, unit):
    """Per call k of `event`: live bytes as it starts, and the peak between the end of
    call k-1 (or the start) and the start of call k."""
    rows, stretch_peak, k = [], 0, 0
    for e in events:
        stretch_peak = max(stretch_peak, e["peak"])
        if e["kernel"] == event and e["phase"] == "enter":
            k += 1
            rows.append({"k": k, "at": e["live"], "between": stretch_peak})
        if e["kernel"] == event and e["phase"] == "exit":
            stretch_peak = e["live"]
    rows.append({"k": "end", "at": events[-1]["live"] if events else 0, "between": stretch_peak})
    peak = max((max(r["at"], r["between"]) for r in rows), default=0)
    where = next(
        (f"at merge {r['k']}" if r["at"] == peak else f"before merge {r['k']}")
        for r in rows
        if peak in (r["at"], r["between"])
    )
    return {"unit_bytes": unit, "rows": rows, "peak": peak, "where": where}


# --------------------------------------------------------------------------- checking


def full_size(mod, size):
    """The example's sizes: make_inputs' defaults with the overrides applied."""
    params = inspect.signature(mod.make_inputs).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("device", "seed")}
    return {**defaults, **size}


def observably_equal(entry):
    cmp = entry["comparison"]
    return cmp["within_tolerance"] and not cmp["caller_args_differ"]


def judge(name, mod, entry, texts, size):
    """Fill each rewritten form's status; return the failures (lazy: notes only)."""
    failures = []
    chunks = size[mod.CHUNK_PARAM]
    original = entry["original"]
    expect_fix = getattr(mod, "EXPECT_SAFE_FIX", True)
    for form in entry:
        if form == "original":
            continue
        cmp = entry[form]["comparison"]
        problems = []
        if entry[form]["inputs"] != original["inputs"]:
            problems.append("ran on other inputs than the original")
        if form == "unsafe":
            expect = getattr(mod, "expect_unsafe_equal", lambda **_: True)(**size)
            entry[form]["expected"] = "equal" if expect else "differ"
            if observably_equal(entry[form]) != expect:
                problems.append(
                    "results or caller's arguments changed"
                    if expect
                    else "results and caller's arguments did NOT change (hazard not shown)"
                )
        else:
            entry[form]["expected"] = "equal"
            if not cmp["within_tolerance"]:
                problems.append("results changed")
            if cmp["caller_args_differ"]:
                differ = ", ".join(cmp["caller_args_differ"])
                problems.append(f"caller's arguments differ: {differ}")
            if form == "safe" and expect_fix and texts["safe"] == texts["original"]:
                problems.append("the fixer left it unchanged")
            if form == "safe" and not expect_fix and texts["safe"] != texts["original"]:
                problems.append("a safe fix was applied where the example expects none")
            keys = ["peak_bytes", "bytes_copied"]
            if chunks >= 3:
                keys = ["alloc_calls", "alloc_bytes"] + keys
            for key in keys:
                if entry[form][key] > original[key]:
                    problems.append(f"{key} {entry[form][key]} > original's {original[key]}")
        label = "note" if form == "lazy" else "FAIL"
        entry[form]["status"] = f"{label}: " + "; ".join(problems) if problems else "ok"
        if form != "lazy":
            failures += [f"{name} ({mod.CHUNK_PARAM}={chunks}) {form}: {p}" for p in problems]
    return failures


def growth(runs, name, form, key):
    """{chunk count: value} of one example's form over a sweep."""
    return {
        run["size"][run["chunk_param"]]: run["forms"][form][key]
        for run in runs
        if run["example"] == name and form in run["forms"]
    }


def check_growth(runs, expect_fix):
    """Over a sweep, the safe form must drop a per-iteration allocation."""
    failures = []
    for name in sorted({run["example"] for run in runs}):
        if not expect_fix.get(name, True):
            continue
        orig = growth(runs, name, "original", "alloc_calls")
        safe = growth(runs, name, "safe", "alloc_calls")
        lo, hi = min(orig), max(orig)
        if hi == lo:
            continue
        if safe[hi] - safe[lo] >= orig[hi] - orig[lo]:
            failures.append(
                f"{name} safe: allocator calls grow as fast as the original's "
                f"({safe[lo]} -> {safe[hi]} against {orig[lo]} -> {orig[hi]})"
            )
    return failures


# --------------------------------------------------------------------------- reporting


def mb(n):
    return "-" if n is None else f"{n / 1e6:.1f}" if n >= 1e5 else f"{n / 1e6:.3f}"


def exponent(values):
    """d log(value) / d log(chunks) between the smallest and the largest chunk count."""
    lo, hi = min(values), max(values)
    if hi == lo or not values[lo] or not values[hi]:
        return "-"
    return f"{math.log(values[hi] / values[lo]) / math.log(hi / lo):.2f}"


def verdict(m):
    if "comparison" not in m:
        return "(reference)"
    c = m["comparison"]
    if c["bitwise_equal"]:
        text = "bitwise equal"
    elif c["within_tolerance"]:
        text = f"within tolerance: max abs diff {c['max_abs_diff']}"
    else:
        text = f"differ: {c['mismatches']} values, max abs diff {c['max_abs_diff']}"
    text += "; caller's args " + ("DIFFER" if c["caller_args_differ"] else "same")
    text += f" (expected {m['expected']})"
    if not c["same_strides"]:
        text += ", result strides differ"
    if m["status"] != "ok":
        text = f"**{m['status']}**: " + text
    return text


def markdown(report):
    env = report["environment"]
    lines = [
        (
            f"Device: {env['device_name']} ({env['device']}); torch {env['torch']}, "
            f"triton {env['triton']}, Python {env['python']}; attention: {env['attention']}; "
            f"rewrites: {env['rewrites']}; {env['date']}"
        ),
        "",
        (
            "| example | size | form | fixes (fixed/held back/left) | results, caller's args "
            "| alloc calls | MB allocated | MB copied | peak MB | peak reserved MB | median ms |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        size = ", ".join(f"{k}={v}" for k, v in run["size"].items())
        for form, m in run["forms"].items():
            fix = report["fixes"][run["example"]].get(form)
            fixes = "-"
            if fix is not None:
                fixes = f"{fix['fixed']}/{fix['held_back']}/{len(fix['remaining'])}"
            elif form == "lazy":
                fixes = "derived"
            lines.append(
                f"| {run['example']} | {size} | {form} | {fixes} | {verdict(m)} "
                f"| {m['alloc_calls']} | {mb(m['alloc_bytes'])} | {mb(m['bytes_copied'])} "
                f"| {mb(m['peak_bytes'])} | {mb(m['peak_reserved_bytes'])} "
                f"| {m['median_ms']:.3f} |"
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
            for form in ("original", "safe", "unsafe", "lazy"):
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
    traced = [run for run in report["runs"] if "trace_summary" in run["forms"]["original"]]
    for run in traced:
        lines += trace_table(run)
    if report["failures"]:
        lines.append("Failures:")
        lines += [f"- {f}" for f in report["failures"]]
    else:
        lines.append("No failures.")
    return "\n".join(lines)


def trace_table(run):
    forms = list(run["forms"])
    unit = run["forms"]["original"]["trace_summary"]["unit_bytes"] or 1
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
    summaries = [run["forms"][f]["trace_summary"] for f in forms]
    for i, row in enumerate(summaries[0]["rows"]):
        cells = []
        for s in summaries:
            r = s["rows"][i] if i < len(s["rows"]) else None
            cells += [cell(r["at"]), cell(r["between"])] if r else ["-", "-"]
        lines.append(f"| {row['k']} | " + " | ".join(cells) + " |")
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--examples", help="comma-separated names (default: all)")
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument(
        "--chunks",
        help="sweep the chunk count, e.g. 4,16,64 (each example's CHUNK_PARAM: chunks, "
        "num_splits, world_size, parts ...)",
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
                        help="per-iteration memory trace (live bytes at and between merges)")
    parser.add_argument("--no-lazy", action="store_true",
                        help="do not measure the lazy ping-pong derived from the safe fix")
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
    if args.prepare:
        prepare(args.prepare, names)
        return 0

    if args.prepared:
        texts, fixes, version = load_prepared(args.prepared, names)
        rewrites = f"prepared in {args.prepared} (alloc_lint {version})"
    else:
        texts, fixes = rewrite(names)
        rewrites = f"alloc_lint {fixer_version()}"
    for name in names:
        lazy = None if args.no_lazy else derive_lazy(texts[name]["safe"])
        if lazy is not None:
            texts[name]["lazy"] = lazy

    import_torch()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    warmup = args.warmup if args.warmup is not None else (3 if device == "cuda" else 1)
    repeat = args.repeat if args.repeat is not None else (20 if device == "cuda" else 3)
    overrides = parse_size(args.size)

    runs, failures, expect_fix = [], [], {}
    with tempfile.TemporaryDirectory(prefix="alloc-lint-verify-") as tmp:
        tmp = Path(tmp)
        # The variants import the helpers (kernels, ...); the copies beside them are used.
        for helper in helpers:
            shutil.copy(EXAMPLES_DIR / f"{helper}.py", tmp / f"{helper}.py")
        sys.path.insert(0, str(tmp))
        import kernels

        if device == "cuda" and hasattr(kernels, "_fused_attention_ok"):
            kernels._fused_attention_ok()  # its own allocations stay out of the counts
        for name in names:
            modules = {}
            for form, text in texts[name].items():
                path = tmp / f"{name}__{form}.py"
                path.write_text(text)
                modules[form] = load_module(path, f"{name}__{form}")
            mod = modules["original"]
            expect_fix[name] = getattr(mod, "EXPECT_SAFE_FIX", True)
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
                entry = measure(modules, size, device, args.seed, warmup, repeat, kernels,
                                args.trace)  # fmt: skip
                failures += judge(name, mod, entry, texts[name], size)
                runs.append({"example": name, "size": size, "chunk_param": mod.CHUNK_PARAM,
                             "forms": entry})
                print(f"done: {name} {mod.CHUNK_PARAM}={size[mod.CHUNK_PARAM]}", file=sys.stderr)
    failures += check_growth(runs, expect_fix)

    report = {
        "environment": environment(device, rewrites, kernels),
        "fixes": fixes,
        "runs": runs,
        "failures": failures,
    }
    text = markdown(report)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if (args.check and failures) else 0


if __name__ == "__main__":
    sys.exit(main())

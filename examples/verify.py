#!/usr/bin/env python
"""Rewrite the examples with alloc-lint's fixer, run original and rewritten code, compare.

For every example and every form (original, safe fixes, unsafe fixes) the harness runs
the example's loop on the same fresh random inputs and reports: whether the results are
bitwise equal to the original's, the allocator calls and bytes over the loop, the peak
memory over the loop (CUDA), and the median time of the loop.

    python examples/verify.py                       # rewrite with alloc_lint, run on CPU
    python examples/verify.py --device cuda --chunks 4,16,64 --json report.json
    python examples/verify.py --check --device cpu --small --chunks 4,8     # CI

The GPU machine cannot install alloc_lint, so rewrite here and carry the files:

    python examples/verify.py --prepare DIR         # writes DIR/<example>__{safe,unsafe}.py
    python examples/verify.py --prepared DIR --device cuda

Allocations: on CUDA, deltas of torch.cuda.memory_stats() "allocation.all.allocated" and
"allocated_bytes.all.allocated" over the loop (the caching allocator's requests; bytes
are rounded up to its 512-byte blocks). On CPU, a TorchDispatchMode counts calls to
allocating factory ops (empty, empty_like, zeros, full, clone, ...) and their bytes;
temporaries inside other ops (the CPU reference merge's) are not counted, as the Triton
merge kernel has none. Each example computes its per-chunk attention in make_inputs, so
the loop's allocations are its own.

--check exits 1 when: a safe rewrite leaves an example unchanged, changes its results
(not bitwise equal), allocates more calls or bytes than the original (from 3 chunks on:
with 2 chunks, one merge, ping-pong's second buffer costs more by design), or allocates
a number of times that depends on the chunk count (with --chunks); an unsafe rewrite
changes results where the example expects it not to, or (padded_v_layout_hazard, from
4 chunks on) does NOT change them: that example exists to show the hazard.
"""

import argparse
import datetime
import hashlib
import importlib.util
import inspect
import json
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXAMPLES_DIR.parent
EXAMPLES = [
    "mla_chunked_prefill",
    "mla_context_parallel",
    "split_kv_decode",
    "ring_attention",
    "padded_v_layout_hazard",
]
FORMS = ("original", "safe", "unsafe")
MANIFEST = "manifest.json"


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


# --------------------------------------------------------------------------- measuring

def import_torch():
    """torch is imported late so that --prepare works without it."""
    global torch, TorchDispatchMode, ALLOC_OPS
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    ALLOC_OPS = {
        aten.empty, aten.empty_like, aten.empty_strided, aten.empty_permuted,
        aten.zeros, aten.zeros_like, aten.ones, aten.ones_like, aten.full, aten.full_like,
        aten.new_empty, aten.new_empty_strided, aten.new_zeros, aten.new_ones, aten.new_full,
        aten.clone, aten.rand, aten.rand_like, aten.randn, aten.randn_like,
    }  # fmt: skip


def make_alloc_counter():
    class AllocCounter(TorchDispatchMode):
        """Counts allocating factory calls (and their bytes) while active."""

        def __init__(self):
            super().__init__()
            self.calls = 0
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in ALLOC_OPS:
                self.calls += 1
                self.bytes += out.untyped_storage().nbytes()
            return out

    return AllocCounter()


def tensors_in(obj, depth=0):
    """Every tensor reachable from the inputs (dicts, sequences, plain objects)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth > 4:
        return
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from tensors_in(value, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from tensors_in(value, depth + 1)
    elif hasattr(obj, "__dict__"):
        yield from tensors_in(vars(obj), depth + 1)


def fingerprint(inputs):
    """A hash of the inputs' bits, to make sure every form ran on the same inputs."""
    h = hashlib.sha256()
    int_types = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    for t in tensors_in(inputs):
        bits = t.detach().contiguous().view(-1).view(int_types[t.element_size()]).long()
        weights = torch.arange(bits.numel(), device=bits.device) % 65521 + 1
        h.update(f"{tuple(t.shape)}{t.dtype}{int((bits * weights).sum())};".encode())
    return h.hexdigest()[:16]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def as_tuple(result):
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def counted_run(mod, inputs, device):
    """Run the loop once; its results (copied to the CPU), allocations and peak."""
    sync(device)
    if device == "cuda":
        before = torch.cuda.memory_stats()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    counter = make_alloc_counter()
    with counter:
        result = as_tuple(mod.run_loop(inputs))
    sync(device)
    stats = {"alloc_ops": counter.calls, "alloc_op_bytes": counter.bytes}
    if device == "cuda":
        after = torch.cuda.memory_stats()
        key_calls, key_bytes = "allocation.all.allocated", "allocated_bytes.all.allocated"
        stats["alloc_calls"] = after.get(key_calls, 0) - before.get(key_calls, 0)
        stats["alloc_bytes"] = after.get(key_bytes, 0) - before.get(key_bytes, 0)
        stats["peak_bytes"] = torch.cuda.max_memory_allocated() - baseline
    else:
        stats["alloc_calls"] = counter.calls
        stats["alloc_bytes"] = counter.bytes
        stats["peak_bytes"] = None  # no allocator statistics on the CPU
    stats["strides"] = [list(t.stride()) for t in result]
    return [t.detach().to("cpu", copy=True) for t in result], stats


def timed_run(mod, inputs, device):
    """Milliseconds of one loop call (CUDA events on the GPU)."""
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


def compare(reference, results):
    """Bitwise comparison of two result lists; the size of any difference."""
    info = {"bitwise_equal": True, "mismatches": 0, "max_abs_diff": 0.0}
    for a, b in zip(reference, results):
        if a.shape != b.shape or a.dtype != b.dtype:
            return {"bitwise_equal": False, "mismatches": None, "max_abs_diff": None}
        same = (a == b) | (a.isnan() & b.isnan())
        bits_equal = torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
        if bits_equal:
            continue
        info["bitwise_equal"] = False
        info["mismatches"] += int((~same).sum())
        if (~same).any():
            diff = (a[~same].double() - b[~same].double()).abs().max().item()
            info["max_abs_diff"] = max(info["max_abs_diff"], diff)
    if not math.isfinite(info["max_abs_diff"]):
        info["max_abs_diff"] = str(info["max_abs_diff"])  # keep the JSON strict
    return info


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure(modules, size, device, seed, warmup, repeat):
    """Results, allocations and times of every form of one example at one size."""
    entry = {}
    results = {}
    for form, mod in modules.items():
        if warmup:  # compiles the Triton kernels, fills the caching allocator
            mod.run_loop(mod.make_inputs(device, seed + 1, **size))
        inputs = mod.make_inputs(device, seed, **size)
        fp = fingerprint(inputs)
        results[form], entry[form] = counted_run(mod, inputs, device)
        entry[form]["inputs"] = fp
        del inputs
    # Time the forms in turns, so that drifting clocks hit them alike.
    inputs = {form: mod.make_inputs(device, seed + 2, **size) for form, mod in modules.items()}
    times = {form: [] for form in modules}
    for turn in range(warmup + repeat):
        for form, mod in modules.items():
            ms = timed_run(mod, inputs[form], device)
            if turn >= warmup:
                times[form].append(ms)
    for form in modules:
        entry[form]["median_ms"] = statistics.median(times[form])
        entry[form]["times_ms"] = times[form]
        if form != "original":
            entry[form]["comparison"] = compare(results["original"], results[form])
            # Informative only: the swap form's result layout can follow the chunk parity.
            same = entry[form]["strides"] == entry["original"]["strides"]
            entry[form]["comparison"]["same_strides"] = same
    return entry


# --------------------------------------------------------------------------- checking


def full_size(mod, size):
    """The example's sizes: make_inputs' defaults with the overrides applied."""
    params = inspect.signature(mod.make_inputs).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("device", "seed")}
    return {**defaults, **size}


def judge(name, mod, entry, texts, size):
    """Fill each rewritten form's status; return the failures."""
    failures = []
    chunks = size[mod.CHUNK_PARAM]
    original = entry["original"]
    for form in ("safe", "unsafe"):
        if form not in entry:
            continue
        cmp = entry[form]["comparison"]
        if form == "safe":
            expect_equal = True
        else:
            expect = getattr(mod, "expect_unsafe_equal", lambda **_: True)
            expect_equal = expect(**size)
        entry[form]["expected"] = "equal" if expect_equal else "differ"
        if entry[form]["inputs"] != original["inputs"]:
            problems = ["ran on other inputs than the original"]
        elif cmp["bitwise_equal"] != expect_equal:
            problems = [
                "results changed" if expect_equal else "results did NOT change (hazard not shown)"
            ]
        else:
            problems = []
        if form == "safe":
            if texts["safe"] == texts["original"]:
                problems.append("the fixer left it unchanged")
            if chunks >= 3:
                for key in ("alloc_calls", "alloc_bytes"):
                    if entry[form][key] > original[key]:
                        problems.append(f"{key} {entry[form][key]} > original's {original[key]}")
        entry[form]["status"] = "FAIL: " + "; ".join(problems) if problems else "ok"
        failures += [f"{name} ({mod.CHUNK_PARAM}={chunks}) {form}: {p}" for p in problems]
    return failures


def check_constant(runs):
    """The safe form must allocate as often at every chunk count."""
    failures = []
    for name in {run["example"] for run in runs}:
        counts = {
            run["size"][run["chunk_param"]]: run["forms"]["safe"]["alloc_calls"]
            for run in runs
            if run["example"] == name and "safe" in run["forms"]
        }
        if len(set(counts.values())) > 1:
            failures.append(f"{name} safe: allocation calls depend on the chunk count: {counts}")
    return failures


# --------------------------------------------------------------------------- reporting


def mb(n):
    return "-" if n is None else f"{n / 1e6:.1f}"


def markdown(report):
    env = report["environment"]
    lines = [
        (
            f"Device: {env['device_name']} ({env['device']}); torch {env['torch']}, "
            f"triton {env['triton']}, Python {env['python']}; rewrites: {env['rewrites']}; "
            f"{env['date']}"
        ),
        "",
        (
            "| example | size | form | fixes (fixed/held back/left) | results vs original "
            "| alloc calls | MB allocated | peak MB | median ms |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        size = ", ".join(f"{k}={v}" for k, v in run["size"].items())
        for form, m in run["forms"].items():
            fix = report["fixes"][run["example"]].get(form)
            fixes = "-"
            if fix is not None:
                fixes = f"{fix['fixed']}/{fix['held_back']}/{len(fix['remaining'])}"
            if form == "original":
                verdict = "(reference)"
            else:
                c = m["comparison"]
                if c["bitwise_equal"]:
                    verdict = "bitwise equal"
                else:
                    verdict = f"differ: {c['mismatches']} values, max abs diff {c['max_abs_diff']}"
                verdict += f" (expected {m['expected']})"
                if not c["same_strides"]:
                    verdict += ", result strides differ"
                if m["status"] != "ok":
                    verdict = f"**{m['status']}**: " + verdict
            lines.append(
                f"| {run['example']} | {size} | {form} | {fixes} | {verdict} | {m['alloc_calls']} "
                f"| {mb(m['alloc_bytes'])} | {mb(m['peak_bytes'])} | {m['median_ms']:.3f} |"
            )
    lines.append("")
    if report["failures"]:
        lines.append("Failures:")
        lines += [f"- {f}" for f in report["failures"]]
    else:
        lines.append("No failures.")
    return "\n".join(lines)


def environment(device, rewrites):
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    if device == "cuda":
        device_name = torch.cuda.get_device_name()
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "device": device,
        "device_name": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
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
    parser.add_argument(
        "--chunks",
        help="sweep the chunk count, e.g. 4,16,64 (each example's chunk-like size: "
        "chunks, num_splits, world_size)",
    )
    parser.add_argument(
        "--size",
        help="size overrides, e.g. tokens=4096,heads=16 (for the examples that take them)",
    )
    parser.add_argument("--small", action="store_true", help="the examples' small CI sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, help="untimed runs (default: cuda 3, cpu 1)")
    parser.add_argument("--repeat", type=int, help="timed runs (default: cuda 20, cpu 3)")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--check", action="store_true", help="exit 1 on any failure")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prepare", type=Path, metavar="DIR",
                       help="only write the rewritten examples to DIR (needs alloc_lint)")
    group.add_argument("--prepared", type=Path, metavar="DIR",
                       help="use the rewritten examples in DIR instead of alloc_lint")
    args = parser.parse_args(argv)

    names = args.examples.split(",") if args.examples else EXAMPLES
    unknown = set(names) - set(EXAMPLES)
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

    import_torch()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    warmup = args.warmup if args.warmup is not None else (3 if device == "cuda" else 1)
    repeat = args.repeat if args.repeat is not None else (20 if device == "cuda" else 3)
    chunk_counts = [int(c) for c in args.chunks.split(",")] if args.chunks else [None]
    overrides = parse_size(args.size)

    runs, failures = [], []
    with tempfile.TemporaryDirectory(prefix="alloc-lint-verify-") as tmp:
        tmp = Path(tmp)
        # The variants import `kernels`; the copy beside them is the one they get.
        shutil.copy(EXAMPLES_DIR / "kernels.py", tmp / "kernels.py")
        sys.path.insert(0, str(tmp))
        for name in names:
            modules = {}
            for form in FORMS:
                path = tmp / f"{name}__{form}.py"
                path.write_text(texts[name][form])
                modules[form] = load_module(path, f"{name}__{form}")
            mod = modules["original"]
            for chunks in chunk_counts:
                size = dict(mod.SMALL) if args.small else {}
                params = inspect.signature(mod.make_inputs).parameters
                size.update({k: v for k, v in overrides.items() if k in params})
                if chunks is not None:
                    size[mod.CHUNK_PARAM] = chunks
                size = full_size(mod, size)
                entry = measure(modules, size, device, args.seed, warmup, repeat)
                failures += judge(name, mod, entry, texts[name], size)
                runs.append({"example": name, "size": size, "chunk_param": mod.CHUNK_PARAM,
                             "forms": entry})
                print(f"done: {name} {mod.CHUNK_PARAM}={size[mod.CHUNK_PARAM]}", file=sys.stderr)
    if len(chunk_counts) > 1:
        failures += check_constant(runs)

    report = {
        "environment": environment(device, rewrites),
        "fixes": fixes,
        "runs": runs,
        "failures": failures,
    }
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if (args.check and failures) else 0


if __name__ == "__main__":
    sys.exit(main())

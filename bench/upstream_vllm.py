"""Reproduce the real-code measurements of the detection and fix issues.

    python bench/upstream_vllm.py

Fetches vllm 0.21.0 (before the upstream fix, vLLM PR #42460) and 0.22.0 (after)
into the cache outside the repository (bench/fetch.py), then:
1. times `alloc-lint check --no-cache` over each whole release and lists its findings;
2. fixes 0.21.0's mla_attention.py (safe, and with --unsafe-fixes), prints both diffs,
   byte-compiles both results and re-checks them;
3. compares the --unsafe-fixes result with 0.22.0's code: the two methods must be the
   same program once the upstream names are mapped onto ours and the `T = None` line,
   which upstream placed a few statements earlier, is set aside.
"""
from __future__ import annotations

import ast
import difflib
import py_compile
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import fetch  # noqa: E402

import alloc_lint  # noqa: E402

MLA = "vllm/model_executor/layers/attention/mla_attention.py"
METHODS = ("_compute_prefill_context", "_context_parallel_compute_prefill_context")
UPSTREAM_NAMES = {"merge_output_lse": "output_lse_tmp", "merge_output": "output_tmp"}


def check_release(tree: Path) -> None:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "alloc_lint.cli", "check", "--no-cache", "--stats", str(tree)],
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    print(f"## alloc-lint check {tree.name}: exit {run.returncode}, {wall:.2f} s wall")
    print(run.stdout.replace(str(tree) + "/", ""), end="")
    print("stats:", run.stderr.strip().splitlines()[-1])


def methods(source: str) -> dict[str, str]:
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name in METHODS:
            node.body = [s for s in node.body if ast.unparse(s) != "output_tmp = None"]
            found[node.name] = ast.unparse(node)
    return found


def main() -> int:
    old, new = fetch("vllm==0.21.0"), fetch("vllm==0.22.0")
    for tree in (old, new):
        check_release(tree)
    original = (old / MLA).read_text()
    ok = True
    for unsafe in (False, True):
        result = alloc_lint.fix_source(original, MLA, unsafe_fixes=unsafe)
        label = "--unsafe-fixes" if unsafe else "safe fixes"
        print(f"\n## fix {MLA} ({label}): {result.fixed} findings fixed")
        sys.stdout.writelines(difflib.unified_diff(original.splitlines(True), result.text.splitlines(True),
                                                   f"a/{MLA}", f"b/{MLA}", n=1))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "mla_attention.py")
            path.write_text(result.text)
            py_compile.compile(str(path), doraise=True)
        left = alloc_lint.check_source(result.text, MLA)
        print(f"py_compile: ok; alloc-lint check on the fixed file: {len(left)} findings")
        ok &= not left
        if unsafe:
            upstream = (new / MLA).read_text()
            for before, after in UPSTREAM_NAMES.items():
                upstream = upstream.replace(before, after)
            same = methods(result.text) == methods(upstream)
            print(f"same program as vllm 0.22.0 (names mapped, `output_tmp = None` placement aside): {same}")
            ok &= same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

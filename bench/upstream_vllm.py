"""Reproduce the real-code measurements of the detection and fix issues.

    python bench/upstream_vllm.py

Fetches vllm 0.21.0 (before the upstream fix, vLLM PR #42460) and 0.22.0 (after)
into the cache outside the repository (bench/fetch.py), then:
1. times `alloc-lint check --no-cache` over each whole release and lists its findings;
2. fixes 0.21.0's mla_attention.py (safe, and with --unsafe-fixes), prints both diffs,
   byte-compiles both results and re-checks them;
3. compares the --unsafe-fixes result with 0.22.0's code: the two methods must be the
   same program once the upstream names are mapped onto ours and the `T = None` line,
   which upstream placed a few statements earlier, is set aside;
4. fixes SGLang 0.5.23's `merge_state` loops (the accumulator starts as the caller's
   tensor): every finding must get a SAFE fix (ping-pong), and the result must
   compile and leave no finding.
Exit 0 only when every check holds.
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
SGLANG = ("sglang/srt/models/deepseek_common/attention_forward_methods/forward_mha.py",
          "sglang/srt/models/dots3_common/modeling.py")


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


def fix_and_check(tree: Path, relative: str, unsafe: bool) -> tuple[bool, str]:
    """Fix one file; print the diff; True when it compiles and no finding is left."""
    original = (tree / relative).read_text()
    found = alloc_lint.check_source(original, relative)
    result = alloc_lint.fix_source(original, relative, unsafe_fixes=unsafe)
    label = "--unsafe-fixes" if unsafe else "safe fixes"
    safe = sum(1 for d in found if d.fix_for(False) is not None)
    print(f"\n## fix {relative} ({label}): {result.fixed} of {len(found)} findings fixed; "
          f"{safe} of them have a safe fix ({', '.join(sorted({d.fix_for(False).form for d in found if d.fix_for(False)}))})")
    sys.stdout.writelines(difflib.unified_diff(original.splitlines(True), result.text.splitlines(True),
                                               f"a/{relative}", f"b/{relative}", n=1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, Path(relative).name)
        path.write_text(result.text)
        py_compile.compile(str(path), doraise=True)
    left = alloc_lint.check_source(result.text, relative)
    print(f"py_compile: ok; alloc-lint check on the fixed file: {len(left)} findings")
    return bool(found) and safe == len(found) == result.fixed and not left, result.text


def main() -> int:
    old, new = fetch("vllm==0.21.0"), fetch("vllm==0.22.0")
    for tree in (old, new):
        check_release(tree)
    ok = True
    for unsafe in (False, True):
        good, text = fix_and_check(old, MLA, unsafe)
        ok &= good
        if unsafe:
            upstream = (new / MLA).read_text()
            for before, after in UPSTREAM_NAMES.items():
                upstream = upstream.replace(before, after)
            same = methods(text) == methods(upstream)
            print(f"same program as vllm 0.22.0 (names mapped, `output_tmp = None` placement aside): {same}")
            ok &= same
    sglang = fetch("sglang==0.5.23")
    check_release(sglang)
    for relative in SGLANG:
        ok &= fix_and_check(sglang, relative, unsafe=False)[0]
    print(f"\nall checks hold: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

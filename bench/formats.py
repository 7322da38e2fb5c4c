"""Is machine-readable output as fast as text? (issue 9: JSON/SARIF carry each
fix's edits, which text output does not compute.)

    python bench/formats.py                                  # vllm==0.33.0, 5 rounds
    python bench/formats.py --rounds 7 --append vllm==0.33.0 sglang==0.5.23

Cold checks (`alloc-lint check --no-cache --format text|json|sarif .`) and
`ruff check --no-cache --select PERF`, round-robin over the tools so that
noise hits each alike, on release trees fetched by bench/fetch.py. Wall
clock and CPU seconds (user + system, GNU time) per run, median and min–max;
the machine's load average before and after, since wall clock on a shared
machine is noisy and CPU seconds much less so. Then, in this process, the CPU
cost of each file with fixes (best of 10): checking it again, computing its
fixes' edits, and `ast.parse` alone. Uses bench/run.py's runner; appends to
bench/RESULTS.md with --append.
"""

import argparse
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import time

import run  # bench/run.py: `python bench/formats.py` puts bench/ on sys.path

FORMATS = ("text", "json", "sarif")


def timed(argv: list, tree: Path, timeout: float):
    """(wall s, CPU s, run) of one command; CPU from GNU time's %U + %S."""
    with tempfile.NamedTemporaryFile("r", suffix=".cpu") as cpu:
        r = run.run_once([run.TIME, "-q", "-f", "%U %S", "-o", cpu.name, *argv], tree, timeout)
        try:
            user, system = map(float, Path(cpu.name).read_text().split()[-2:])
        except (ValueError, OSError):
            user = system = float("nan")
    return r.wall, user + system, r


def row(label: str, walls: list, cpus: list, ref: tuple | None) -> str:
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    ratio = f"{wall / ref[0]:.2f} | {cpu / ref[1]:.2f}" if ref else "– | –"
    return (f"| {label} | {len(walls)} | {wall:.2f} | {min(walls):.2f}–{max(walls):.2f} "
            f"| {cpu:.2f} | {min(cpus):.2f}–{max(cpus):.2f} | {ratio} |")


def per_file_costs(tree: Path) -> list[str]:
    """Best-of-10 CPU seconds, per file with fixes: check, edits, ast.parse."""
    import ast

    from alloc_lint import engine, fixer
    from alloc_lint.api import attach_edits
    from alloc_lint.config import Config

    def best(work) -> float:
        times = []
        for _ in range(10):
            for cache in (fixer._index, fixer._lines, fixer._bare, fixer._snippet, fixer._string_lines):
                cache.cache_clear()
            start = time.process_time()
            work()
            times.append(time.process_time() - start)
        return min(times)

    report = engine.check_paths([str(tree)], Config())
    rows = ["| file | lines | fixes | check s | edits s | of which ast.parse s |", "|---|---|---|---|---|---|"]
    for filename in sorted({d.filename for d in report.diagnostics if d.fixes}):
        text = engine.read_source(filename).text
        found = engine.check_text(text, filename, Config())
        fixes = len({f.operations for d in found for f in d.fixes})
        rows.append(f"| {Path(filename).relative_to(tree)} | {text.count(chr(10))} | {fixes} "
                    f"| {best(lambda: engine.check_text(text, filename, Config())):.4f} "
                    f"| {best(lambda: attach_edits(text, found)):.4f} | {best(lambda: ast.parse(text)):.4f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="*", default=["vllm==0.33.0"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default=str(run.HERE / "RESULTS.md"), help="'' for none")
    ap.add_argument("--append", action="store_true", help="append to --out")
    args = ap.parse_args()
    args_line = " ".join(["python bench/formats.py"] + [shlex.quote(a) for a in sys.argv[1:]])

    tools = {f: [run.ALC, "check", "--no-cache", "--format", f, "."] for f in FORMATS}
    tools["ruff"] = run.TOOLS["ruff"].argv
    sections = []
    for spec in args.trees:
        label, tree = run.tree_of(spec)
        nfiles = sum(1 for _ in tree.rglob("*.py"))
        run.run_once(run.TOOLS["floor"].argv, tree, args.timeout)  # warm the page cache
        for argv in tools.values():  # and the bytecode
            run.run_once(argv, tree, args.timeout)
        load_before = os.getloadavg()
        walls: dict = {name: [] for name in tools}
        cpus: dict = {name: [] for name in tools}
        findings = {}
        for i in range(args.rounds):
            for name, argv in tools.items():
                wall, cpu, r = timed(argv, tree, args.timeout)
                if run.failed(r) or r.rc is None:
                    sys.exit(f"{name} failed on {label}: {run.failed(r) or 'timed out'}")
                walls[name].append(wall)
                cpus[name].append(cpu)
                if name == "json":
                    findings[name] = len(run.findings(r.out) or [])
                print(f"  {label} round {i + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU",
                      file=sys.stderr, flush=True)
        load_after = os.getloadavg()
        text = (statistics.median(walls["text"]), statistics.median(cpus["text"]))
        lines = [f"### {label} — {nfiles} files, {findings.get('json', '?')} findings with fixes' edits", "",
                 "| command | rounds | median wall s | min–max | median CPU s | min–max | × text wall | × text CPU |",
                 "|---|---|---|---|---|---|---|---|"]
        for name in tools:
            shown = (f"`alloc-lint check --no-cache --format {name}`" if name in FORMATS
                     else f"`{run.TOOLS['ruff'].label}`")
            lines.append(row(shown, walls[name], cpus[name], None if name == "text" else text))
        lines += ["", f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; "
                      f"after: {', '.join(f'{x:.1f}' for x in load_after)}.", "",
                  "CPU per file with fixes, in this process (best of 10):", "", *per_file_costs(tree)]
        sections.append("\n".join(lines))

    report = "\n\n".join(["## Output formats: JSON and SARIF against text", run.machine(args_line),
                          *sections]) + "\n"
    print(report)
    if args.out:
        with open(args.out, "a" if args.append else "w") as f:
            f.write(("\n---\n\n" if args.append else "") + report)


if __name__ == "__main__":
    main()

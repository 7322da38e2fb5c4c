"""ALC002 over real releases: every finding, with its verdict, and the prefilter differential.

    python bench/alc002_real_code.py                  # writes bench/out/alc002_real_code.txt
    python bench/alc002_real_code.py --check          # exit 1 if a finding has no verdict,
                                                      # a verdict lost its finding, or the
                                                      # prefilter changed any finding

Fetches each release into the cache outside the repository (bench/fetch.py), runs
ALC002 alone over every file twice (with the text predicate, and parsing every file),
and prints each finding with the lines around it and the verdict written by hand in
bench/alc002_verdicts.txt (`release path:line | true/false | reason`). Verdicts are
matched on the release, path and the stripped source line, so they survive line
shifts but not code changes.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import fetch  # noqa: E402

from alloc_lint import engine  # noqa: E402
from alloc_lint.config import Config  # noqa: E402
from alloc_lint.rules.alc002_text import might_match  # noqa: E402

RELEASES = (
    "vllm==0.33.0", "sglang==0.5.23", "transformers==5.24.0", "diffusers==0.42.1",
    "torchtune==0.6.1", "deepspeed==0.19.8", "accelerate==1.15.0", "peft==0.21.2",
    "megatron-core==0.16.1", "timm==1.0.31", "lightning==2.6.6", "torch==2.13.0",
)
HERE = Path(__file__).resolve().parent
VERDICTS = HERE / "alc002_verdicts.txt"
OUT = HERE / "out" / "alc002_real_code.txt"
CONFIG = Config(select=("ALC002",))
CONTEXT = 4  # lines shown above a finding


def load_verdicts() -> dict:
    verdicts = {}
    for line in VERDICTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            release, path, source, verdict, reason = line.split("\t", 4)
            verdicts[(release, path, source.strip())] = (verdict.strip(), reason.strip())
    return verdicts


def scan(tree: Path):
    """(findings with the predicate, findings parsing every file, files, kept, seconds of predicate)."""
    files = sorted(tree.rglob("*.py"))
    with_predicate, everything, kept, predicate_time = [], [], 0, 0.0
    for path in files:
        try:
            text = engine.decode(path.read_bytes()).text
        except engine.SourceError:
            continue
        start = time.process_time()
        keep = might_match(text)
        predicate_time += time.process_time() - start
        kept += keep
        try:
            found = engine.check_text(text, str(path), CONFIG, prefilter=False)
        except engine.SourceError:
            continue
        rel = str(path.relative_to(tree))
        lines = text.splitlines()
        for d in found:
            item = (rel, d.line, d.column, d.message, lines)
            everything.append(item)
            if keep:
                with_predicate.append(item)
    return with_predicate, everything, len(files), kept, predicate_time


def main(argv: list[str]) -> int:
    check = "--check" in argv
    verdicts = load_verdicts()
    used, report, problems = set(), [], []
    totals = {"true": 0, "false": 0}
    report.append("ALC002 concat-grows-in-loop over real releases (python bench/alc002_real_code.py)\n")
    summary = []
    for spec in RELEASES:
        tree = fetch(spec)
        with_predicate, everything, files, kept, seconds = scan(tree)
        key = lambda item: (item[0], item[1], item[2])  # noqa: E731
        same = sorted(map(key, with_predicate)) == sorted(map(key, everything))
        if not same:
            problems.append(f"{spec}: the prefilter changed the findings")
        summary.append(f"{spec:24s} {files:6d} files  predicate keeps {kept:4d} ({seconds:.2f} s CPU)  "
                       f"findings {len(everything):3d}  with/without predicate identical: {same}")
        for rel, line, column, message, lines in everything:
            source = lines[line - 1].strip()
            verdict, reason = verdicts.get((spec, rel, source), ("MISSING", "no verdict written"))
            used.add((spec, rel, source))
            if verdict == "MISSING":
                problems.append(f"{spec} {rel}:{line}: no verdict")
            else:
                totals[verdict] = totals.get(verdict, 0) + 1
            report.append(f"## {spec} {rel}:{line}:{column}  [{verdict}] {reason}")
            report.append(f"   {message}")
            for n in range(max(1, line - CONTEXT), line + 1):
                report.append(f"   {n:5d} | {lines[n - 1]}")
            report.append("")
    fixed = []
    for stale in sorted(set(verdicts) - used):
        if verdicts[stale][0] == "false":
            fixed.append(f"   {stale[0]} {stale[1]}: {stale[2]}  ({verdicts[stale][1]})")
        else:
            problems.append(f"verdict without a finding: {' '.join(stale)}")
    if fixed:
        report.append("False positives found in earlier runs, no longer reported:")
        report.extend(fixed)
    text = "\n".join(report[:1] + summary + [
        f"\nverdicts: {totals.get('true', 0)} true, {totals.get('false', 0)} false positives\n"] + report[1:])
    if problems:
        text += "\nPROBLEMS:\n" + "\n".join(problems)
    text += "\n"
    if not check:
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(text, encoding="utf-8")
    print("\n".join(summary))
    print(f"verdicts: {totals.get('true', 0)} true, {totals.get('false', 0)} false")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

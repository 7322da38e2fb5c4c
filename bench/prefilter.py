"""The text prefilter on real releases and on generated programs: what each
stage of ALC001's predicate keeps, what it costs, and whether any file with
a finding is skipped.

    python bench/prefilter.py vllm==0.33.0 sglang==0.5.23 torch==2.13.0
    python bench/prefilter.py --fuzz 100000          # generated programs

Trees are NAME==VERSION (fetched by bench/fetch.py into the cache outside the
repository) or plain directories. Every *.py file is read and decoded once;
then, in this process, CPU time (best of --rounds): every selected rule's
predicate (`engine.might_match`, what `alloc-lint check` runs), and ALC001's
predicate stopped after each stage. Then every file is checked WITHOUT the
prefilter (ast and rules) and the files with findings are compared with the
kept ones, file by file: a skipped file with a finding is a soundness bug,
and the exit status is 1.

--fuzz N checks N programs from tests/prefilter_programs.py (ALC001 patterns
in every spelling, respelt between tokens; seeds 0..N-1): kept whenever the
rule finds something, and always when written in a spelling the rule is
being extended to. Run long jobs under `nice -n 10`.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import fetch  # noqa: E402  (bench/fetch.py)

from alloc_lint import engine  # noqa: E402
from alloc_lint.analysis import prefilter  # noqa: E402
from alloc_lint.config import Config  # noqa: E402
from alloc_lint.rules import rule_by_code  # noqa: E402


def texts_of(tree: Path) -> list[tuple[str, str]]:
    out = []
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                try:
                    out.append((os.path.relpath(path, tree), engine.read_source(path).text))
                except engine.SourceError:
                    pass
    return out


def cpu(fn, rounds: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def check_tree(spec: str, rounds: int, config: Config) -> tuple[str, int]:
    tree = fetch.fetch(spec) if "==" in spec and not Path(spec).exists() else Path(spec)
    texts = texts_of(tree)
    alc001 = rule_by_code("ALC001")
    functions, methods = alc001.callee_names(config)
    size = sum(len(t) for _, t in texts) / 1e6
    lines = [f"### {spec} — {len(texts)} files, {size:.1f} M characters", ""]

    floor, _ = cpu(lambda: sum("for" in t for _, t in texts), rounds)
    total, kept = cpu(lambda: [p for p, t in texts if engine.might_match(t, config)], rounds)
    lines += ["| stage of ALC001's predicate | files past it | CPU s (cumulative) |", "|---|---|---|"]
    for last in range(4):
        seconds, reached = cpu(lambda: [prefilter.stage_reached(t, functions, methods, last) for _, t in texts],
                               rounds)
        past = sum(r > last for r in reached)
        lines.append(f"| {last + 1}. {prefilter.STAGES[last][3:]} | {past} | {seconds:.3f} |")
    lines += ["", f"Every selected rule's predicate (`engine.might_match`): {len(kept)} files kept, "
                  f"{total:.3f} s CPU (one substring test per file: {floor:.3f} s).", ""]

    start = time.process_time()
    with_findings, errors = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, text in texts:
            try:
                if engine.check_text(text, path, config, prefilter=False):
                    with_findings.append(path)
            except engine.SourceError:
                errors += 1
    parse_all = time.process_time() - start
    missed = sorted(set(with_findings) - set(kept))
    verdict = "**sound**: every file with a finding is kept" if not missed else \
        f"**UNSOUND**: {len(missed)} file(s) with findings skipped: {', '.join(missed)}"
    lines.append(f"Without the prefilter (ast and rules on every file, {parse_all:.1f} s CPU, "
                 f"{errors} files that do not parse): {len(with_findings)} files with findings; "
                 f"{verdict}.")
    lines.append("")
    lines.append("Kept: " + (", ".join(f"`{p}`" + (" (finding)" if p in with_findings else "")
                                       for p in kept) or "none") + ".")
    return "\n".join(lines), len(missed)


def fuzz(count: int, start: int = 0) -> tuple[str, int]:
    from prefilter_programs import Choices, program, respell

    findings = future = kept_future = misses = 0
    first_miss = None
    for seed in range(start, start + count):
        rnd = random.Random(seed)
        p = program(Choices.seeded(rnd))
        text = respell(p.text, rnd, rate=rnd.choice([0.0, 0.15, 0.4, 0.8]))
        kept = engine.might_match(text, p.config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = bool(engine.check_text(text, "<generated>", p.config, prefilter=False))
        findings += found
        future += p.future
        kept_future += p.future and kept
        if (found or p.future) and not kept:
            misses += 1
            first_miss = first_miss or (seed, p.spelling, text)
    report = (f"Generated programs (seeds {start}..{start + count - 1}): {count}; with findings: "
              f"{findings}; in spellings the rule is being extended to: {future} ({kept_future} kept); "
              f"skipped although they had to be kept: {misses}.")
    if first_miss:
        report += f"\n\nFirst: seed {first_miss[0]}, {first_miss[1]}:\n\n```\n{first_miss[2]!r}\n```"
    return report, misses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="*", help="NAME==VERSION or a directory")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, best taken (3)")
    ap.add_argument("--fuzz", type=int, default=0, metavar="N", help="check N generated programs")
    ap.add_argument("--seed", type=int, default=0, help="first seed of --fuzz (0)")
    args = ap.parse_args()
    config = Config()
    parts, bad = [], 0
    for spec in args.trees:
        print(f"== {spec}", file=sys.stderr, flush=True)
        text, missed = check_tree(spec, args.rounds, config)
        parts.append(text)
        bad += missed
    if args.fuzz:
        text, missed = fuzz(args.fuzz, args.seed)
        parts.append(text)
        bad += missed
    print("\n\n".join(parts))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

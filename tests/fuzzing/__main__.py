"""python -m fuzzing (from tests/, or with tests/ on sys.path):

    run [--n N] [--seed S] [--minimize K]   generate and judge N programs, print the tally
    show SEED                               a program, its rewrites and what changed
    check FILE...                           judge corpus files (or any program with a fuzz-meta line)
    shrink SEED [--save NAME]               minimise a miscompiling program, optionally into the corpus

The alloc_lint judged is the one first on sys.path: PYTHONPATH=/work/wt/a-safety:tests
python -m fuzzing run judges the a-safety branch.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from . import generator
from .evaluate import evaluate
from .grammar import Program
from .minimize import load, minimize, save, tool_revision
from .report import Tally, summarize


def describe(program: Program, verdict) -> str:
    out = [f"seed {verdict.seed}  tags {verdict.tags}  status {verdict.status}",
           f"original raised: {verdict.original_raised}", program.text]
    if verdict.crash:
        out.append("TOOL CRASHED:\n" + verdict.crash)
    for mode in ("safe", "unsafe"):
        result = getattr(verdict, mode)
        if result is None or not result.changed:
            continue
        out.append(f"--- {mode} rewrite {result.forms}: "
                   + ("BAD " + "; ".join(result.diffs + result.static) if result.bad else "same behaviour")
                   + (f" ({result.peak})" if result.peak else ""))
        if result.detail:
            out.append(f"    first difference: {result.detail}")
        out.append("".join(difflib.unified_diff(program.text.splitlines(True), result.text.splitlines(True),
                                                "original", mode, n=2)))
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzzing")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--n", type=int, default=200)
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--show", type=int, default=0, help="print the first K miscompiles")
    p_show = sub.add_parser("show")
    p_show.add_argument("seed", type=int)
    p_check = sub.add_parser("check")
    p_check.add_argument("files", nargs="+", type=Path)
    p_shrink = sub.add_parser("shrink")
    p_shrink.add_argument("seed", type=int)
    p_shrink.add_argument("--mode", default="safe", choices=("safe", "unsafe"))
    p_shrink.add_argument("--save", metavar="NAME")
    for p in (p_run, p_show, p_shrink):
        p.add_argument("--rule", default="ALC001", choices=("ALC001", "ALC002"))
    args = parser.parse_args(argv)
    if hasattr(args, "rule"):
        generate, classes, class_names = generator(args.rule)

    if args.cmd == "run":
        tally, shown = Tally(classes, class_names), 0
        for seed in range(args.seed, args.seed + args.n):
            program = generate(seed)
            verdict = evaluate(program)
            tally.add(summarize(verdict, program.meta))
            if verdict.miscompiled and shown < args.show:
                shown += 1
                print(describe(program, verdict))
        print(f"alloc_lint: {tool_revision()}  seeds {args.seed}..{args.seed + args.n - 1}")
        print(tally.text())
        return 1 if tally.rows["all"]["MISCOMPILED"] else 0
    if args.cmd == "show":
        program = generate(args.seed)
        print(describe(program, evaluate(program)))
        return 0
    if args.cmd == "check":
        bad = 0
        for path in args.files:
            program = load(path)
            verdict = evaluate(program)
            bad += verdict.miscompiled
            print(f"{path}: {'MISCOMPILED' if verdict.miscompiled else 'ok'} ({verdict.status})")
            if verdict.miscompiled:
                print(describe(program, verdict))
        return 1 if bad else 0
    if args.cmd == "shrink":
        program = generate(args.seed)
        small = minimize(program, args.mode)
        verdict = evaluate(small)
        print(describe(small, verdict))
        if args.save:
            result = getattr(verdict, args.mode)
            note = (f"Found by the differential fuzzer (seed {args.seed}) against alloc_lint {tool_revision()}.\n"
                    f"{args.mode} fix ({', '.join(result.forms)}) changed: "
                    + "; ".join(result.diffs + result.static))
            print("saved", save(small, args.save, note))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

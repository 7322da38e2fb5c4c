"""The differential fuzzer at scale: N generated programs (default 100,000),
judged in worker processes, tallied per class of issue 8, written to
bench/out/fuzz.txt.

    nice -n 10 python bench/fuzz.py                    # 100,000 programs, all cores
    python bench/fuzz.py --n 5000 --jobs 2 --budget 1800
    PYTHONPATH=/work/wt/a-safety python bench/fuzz.py  # judge another checkout's alloc_lint

Resumable: each finished chunk of seeds is appended to a progress file (by
default under ~/.cache/alloc-lint-fuzz/, keyed by seed, N and the alloc_lint
revision); a rerun with the same arguments skips the chunks already judged.
With --budget SECONDS it stops handing out chunks when the time is up and
reports what was judged. The first --minimize miscompiles of distinct kinds are
minimised and printed in the report.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # alloc_lint: the one on PYTHONPATH first, else this checkout

from fuzzing import generator, parallel  # noqa: E402
from fuzzing.__main__ import describe  # noqa: E402
from fuzzing.evaluate import evaluate  # noqa: E402
from fuzzing.grammar import Program  # noqa: E402
from fuzzing.minimize import minimize, tool_revision  # noqa: E402
from fuzzing.report import Tally  # noqa: E402


def fuzzer_revision() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rule", default="ALC001", choices=("ALC001", "ALC002"), help="which grammar")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--budget", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--minimize", type=int, default=8, help="minimise this many miscompiles (distinct kinds)")
    parser.add_argument("--progress", type=Path, default=None, help="progress file (JSON lines)")
    parser.add_argument("--out", type=Path, default=None, help="default bench/out/fuzz.txt (fuzz-alc002.txt)")
    args = parser.parse_args(argv)

    lint = tool_revision()
    if args.out is None:
        args.out = ROOT / "bench" / "out" / ("fuzz.txt" if args.rule == "ALC001" else f"fuzz-{args.rule.lower()}.txt")
    suffix = "" if args.rule == "ALC001" else "-" + args.rule
    key = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{args.seed}-{args.n}{suffix}-{lint}").strip("_")
    generate, classes, class_names = generator(args.rule)
    progress = args.progress or Path.home() / ".cache" / "alloc-lint-fuzz" / f"progress-{key}.jsonl"
    progress.parent.mkdir(parents=True, exist_ok=True)
    done, summaries = set(), []
    if progress.exists():
        for line in progress.read_text().splitlines():
            record = json.loads(line)
            done.add(record["chunk"])
            summaries += record["summaries"]
    todo = [c for c in parallel.chunks(args.seed, args.n, args.chunk) if c[0] not in done]
    print(f"alloc_lint {lint}; {len(summaries)} programs judged before, {len(todo)} chunks to go", flush=True)

    start = time.time()
    stopped_early = False
    with parallel.pool(args.jobs) as workers, progress.open("a") as log:
        pending = iter(todo)
        running = []
        while True:
            while len(running) < 2 * args.jobs:
                if args.budget is not None and time.time() - start > args.budget:
                    stopped_early = True
                    break
                chunk = next(pending, None)
                if chunk is None:
                    break
                running.append((chunk, workers.submit(parallel.judge, chunk, args.rule)))
            if not running:
                break
            chunk, result = running.pop(0)
            chunk_summaries = result.result()
            summaries += chunk_summaries
            log.write(json.dumps({"chunk": chunk[0], "summaries": chunk_summaries}) + "\n")
            log.flush()
            print(f"  {len(summaries)} judged, {time.time() - start:.0f} s", flush=True)
    wall = time.time() - start

    tally = Tally(classes, class_names)
    for s in summaries:
        tally.add(s)
    examples, kinds_seen = [], set()
    for s in summaries:
        if len(examples) >= args.minimize:
            break
        if not (s["safe_bad"] or s["crash"]):
            continue
        kind = (tuple(s["safe_bad"] or ["crash"]), tuple(t for t in s["tags"] if t.startswith("c")))
        if kind in kinds_seen:
            continue
        kinds_seen.add(kind)
        program = Program(*s["program"]) if s.get("program") else generate(s["seed"])
        small = minimize(program, "safe", budget=200)
        examples.append(describe(small, evaluate(small)))

    judged = len(summaries)
    lines = [
        "# Differential fuzzer (tests/fuzzing), run by bench/fuzz.py",
        f"command: python bench/fuzz.py --n {args.n} --seed {args.seed} --jobs {args.jobs}"
        + (f" --rule {args.rule}" if args.rule != "ALC001" else "")
        + (f" --budget {args.budget:.0f}" if args.budget else ""),
        f"alloc_lint judged: {lint}; fuzzer: b-fuzz@{fuzzer_revision()}",
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; programs judged: {judged} of {args.n}"
        + (" (stopped by the time budget)" if stopped_early else ""),
        f"wall time this run: {wall:.0f} s on {args.jobs} worker(s)"
        + (f" ({judged / max(wall, 1e-9):.1f} programs/s incl. earlier chunks)" if wall else ""),
        "",
        "Columns: 'fixed safe' a safe fix was applied; 'unsafe only' a fix exists only with --unsafe-fixes;",
        "'MISCOMPILED' the safe rewrite changed an observable (result, caller's arguments, stored state,",
        "stdout, warnings, exception, stream/async reads, more allocator calls) or is malformed (does not",
        "parse, not idempotent, fixable finding left, noqa ignored), or the tool crashed; 'peak up' the safe",
        "rewrite held more bytes at its worst moment (reported apart); 'unsafe run'/'unsafe broken' the same",
        "for the rewrite with --unsafe-fixes. A program counts in every class it exercises.",
        "",
        tally.text(),
        "",
        f"minimised miscompiles (first {len(examples)} of distinct kinds):",
    ]
    for text in examples:
        lines += ["", "=" * 100, text]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:40]))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

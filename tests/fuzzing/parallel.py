"""Judging many seeds in worker processes (spawned: no fork after torch has
started its threads)."""
from __future__ import annotations

import multiprocessing
import os
import sys


def _init(paths):
    sys.path[:0] = [p for p in paths if p not in sys.path]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from .oracle import execute  # warm up: the first run in a process pays for lazy imports

    execute("import torch\ndef run(x, parts):\n    return torch.empty_like(x) + x\n", {})


def judge(seeds, rule: str = "ALC001") -> list[dict]:
    """Summaries (report.summarize) of the programs of these seeds."""
    from . import generator
    from .evaluate import evaluate
    from .report import summarize

    generate = generator(rule)[0]
    out = []
    for seed in seeds:
        program = generate(seed)
        out.append(summarize(evaluate(program), program.meta, program.text))
    return out


def chunks(start: int, n: int, size: int):
    return [list(range(s, min(s + size, start + n))) for s in range(start, start + n, size)]


def pool(jobs: int):
    """An executor whose workers import alloc_lint and the fuzzer from where this
    process does. A worker that dies (out of memory, a crash in torch) makes
    every pending result raise BrokenProcessPool: a multiprocessing.Pool would
    respawn it and wait forever for the chunk it was judging."""
    from concurrent.futures import ProcessPoolExecutor

    import alloc_lint

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
    lint = os.path.dirname(os.path.dirname(os.path.abspath(alloc_lint.__file__)))
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init,
                               initargs=([lint, here],))

"""Shrink a program that miscompiles: drop statements (or unwrap `with`/`if`
blocks) one at a time while the rewrite still changes the same observable and
the original still runs as it did (raising or not). Then save it to the corpus.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

from .evaluate import evaluate
from .grammar import Program

CORPUS = Path(__file__).with_name("corpus")


def _blocks(tree):
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield block


def _candidates(text: str):
    """Texts with one statement less (or one block unwrapped), last statements first."""
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    edits = []
    for block in _blocks(tree):
        for stmt in block:
            start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
            indent = " " * stmt.col_offset
            repl = [indent + "pass\n"] if len(block) == 1 else []
            edits.append((start, stmt.end_lineno, repl))
            if isinstance(stmt, (ast.With, ast.If)) and stmt.body and not getattr(stmt, "orelse", None):
                inner = lines[stmt.body[0].lineno - 1: stmt.body[-1].end_lineno]
                shift = stmt.body[0].col_offset - stmt.col_offset
                edits.append((start, stmt.end_lineno, [ln[shift:] if ln[:shift].isspace() else ln for ln in inner]))
    # big pieces first (helpers, whole blocks), then single statements from the end
    for start, end, repl in sorted(edits, key=lambda e: (-(e[1] - e[0]), -e[0])):
        yield "".join(lines[: start - 1] + repl + lines[end:])


def _kinds(result) -> set:
    kinds = {re.sub(r" .*", "", d) for d in result.diffs}
    if result.static:
        kinds.add("static")
    return kinds


def still_bad(text: str, meta: dict, mode: str, want: set, raised: bool) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    verdict = evaluate(Program(text, meta), run_unsafe=(mode == "unsafe"), static="static" in want)
    if verdict.crash:
        return "crash" in want
    result = getattr(verdict, mode)
    if result is None or not result.changed:
        return False
    if bool(verdict.original_raised) != raised:
        return False
    return bool(_kinds(result) & want)


def minimize(program: Program, mode: str = "safe", budget: int = 400) -> Program:
    verdict = evaluate(program, run_unsafe=(mode == "unsafe"))
    if verdict.crash:
        want = {"crash"}
    else:
        want = _kinds(getattr(verdict, mode))
    raised = bool(verdict.original_raised)
    text = program.text
    tries = 0
    progress = True
    while progress and tries < budget:
        progress = False
        for candidate in _candidates(text):
            tries += 1
            if still_bad(candidate, program.meta, mode, want, raised):
                text = candidate
                progress = True
                break
            if tries >= budget:
                break
    return Program(text, program.meta)


def tool_revision() -> str:
    """Which alloc_lint judged it: the git commit of the checkout it was imported from."""
    import alloc_lint

    root = Path(alloc_lint.__file__).resolve().parent.parent
    if (root / "REVISION").exists():  # a snapshot (git archive) of some commit
        return (root / "REVISION").read_text().strip()
    try:
        # the last commit that changed the tool itself (a branch may have moved on elsewhere)
        rev = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h", "--", "alloc_lint"],
                             capture_output=True, text=True, check=True).stdout.strip()
        branch = subprocess.run(["git", "-C", str(root), "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "alloc_lint"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{branch}@{rev}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return str(root)


def save(program: Program, name: str, note: str, folder: Path = CORPUS) -> Path:
    """Write a regression case: the meta line, what was wrong, the program."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    body = "\n".join(ln for ln in program.text.splitlines() if not ln.startswith("# fuzz-meta: "))
    comment = "".join(f"# {ln}\n" for ln in note.strip().splitlines())
    meta = {k: v for k, v in program.meta.items()}
    path.write_text("# fuzz-meta: " + json.dumps(meta, sort_keys=True) + "\n" + comment + body.rstrip() + "\n")
    return path


def load(path: Path) -> Program:
    from .grammar import parse_header

    text = path.read_text()
    return Program(text, parse_header(text))

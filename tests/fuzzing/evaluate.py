"""Judge one program: check it, fix it (safe, and with unsafe fixes), run the
original and every rewrite on the same inputs, and say what changed.

Only the public API is used: alloc_lint.check_source / fix_source / Config,
and engine.check_text with and without the text prefilter for its soundness.
"""
from __future__ import annotations

import ast
import re
import traceback
from dataclasses import dataclass, field

import alloc_lint
from alloc_lint import engine

from .oracle import differences, explain, peak_increase, run_program

STATUSES = ("fixed-safe", "fixed-unsafe-only", "not-fixed", "not-detected")


def make_config(meta_config: dict) -> alloc_lint.Config:
    cfg = alloc_lint.Config()
    cfg.allocators = tuple(cfg.allocators) + tuple(
        a for a in meta_config.get("allocators", ()) if a not in cfg.allocators)
    cfg.merge_functions = tuple(cfg.merge_functions) + tuple(
        m for m in meta_config.get("merge_functions", ()) if m not in cfg.merge_functions)
    return cfg


@dataclass
class ModeResult:
    """One fix mode (safe / unsafe): what the rewrite did."""
    text: str
    changed: bool
    forms: list = field(default_factory=list)  # forms of the fixes applied
    diffs: list = field(default_factory=list)  # observable differences when run
    static: list = field(default_factory=list)  # rewrite problems: parse, idempotence, leftovers, noqa
    error: str | None = None  # FixError message
    peak: str | None = None  # "peak A->B" when the rewrite holds more bytes at its worst moment
    detail: str = ""  # where the first difference is

    @property
    def bad(self) -> bool:
        return bool(self.diffs or self.static)


@dataclass
class Verdict:
    seed: int | None
    tags: list
    status: str = "not-detected"
    safe: ModeResult | None = None
    unsafe: ModeResult | None = None
    original_raised: tuple | None = None
    crash: str | None = None  # the tool raised
    prefilter_miss: bool = False  # findings only without the prefilter
    silent_no_fix: int = 0  # findings with neither a fix nor a reason

    @property
    def miscompiled(self) -> bool:
        return bool(self.crash) or (self.safe is not None and self.safe.bad)

    @property
    def unsafe_broken(self) -> bool:
        return self.unsafe is not None and self.unsafe.bad


def _fix_forms(diagnostics, unsafe: bool):
    forms = []
    for d in diagnostics:
        fix = d.fix_for(unsafe)
        if fix is not None:
            forms.append(f"{fix.applicability}:{fix.form}")
    return sorted(set(forms))


def _mentions(source, name):
    return sorted(ln for ln in source.splitlines() if re.search(rf"\b{re.escape(name)}\b", ln))


def _suppressed(text, cfg, temps) -> bool:
    """Does a noqa comment on a line naming one of `temps` suppress a finding?
    (Judged by the tool itself: without the comment, that line has a finding.
    The minimiser may have dropped the comment; `# noqa: E501` suppresses nothing.)"""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if "#" in line and "noqa" in line.lower() and any(re.search(rf"\b{re.escape(t)}\b", line) for t in temps):
            bare = lines[:n] + [line[: line.index("#")].rstrip()] + lines[n + 1:]
            with_comment = {d.line for d in alloc_lint.check_source(text, config=cfg)}
            without = {d.line for d in alloc_lint.check_source("\n".join(bare) + "\n", config=cfg)}
            if n + 1 in without - with_comment:
                return True
    return False


def _static_problems(text: str, fixed, cfg, unsafe: bool, noqa_temps) -> list[str]:
    problems = []
    try:
        ast.parse(fixed.text)
    except SyntaxError as exc:
        return [f"rewrite does not parse: {exc}"]
    again = alloc_lint.fix_source(fixed.text, config=cfg, unsafe_fixes=unsafe)
    if again.text != fixed.text:
        problems.append("not idempotent: fixing the rewrite changes it again")
    left = [d for d in alloc_lint.check_source(fixed.text, config=cfg) if d.fix_for(unsafe)]
    if left:
        problems.append(f"rewrite still has {len(left)} fixable {left[0].code} (line {left[0].line})")
    # A group with a suppressed allocation is not fixed: every line that names one
    # of its temporaries stays as it was.
    if _suppressed(text, cfg, noqa_temps):
        for temp in noqa_temps:
            if _mentions(fixed.text, temp) != _mentions(text, temp):
                problems.append(f"noqa ignored: the group of `{temp}` was rewritten")
    return problems


def evaluate(program, run_unsafe: bool = True, static: bool = True) -> Verdict:
    text, meta = program.text, program.meta
    verdict = Verdict(meta.get("seed"), list(meta.get("tags", [])))
    cfg = make_config(meta.get("config", {}))
    try:
        diagnostics = alloc_lint.check_source(text, config=cfg)
        # the text prefilter, as `alloc-lint check` runs it (check_source may skip it)
        filtered = engine.check_text(text, "<string>", cfg, prefilter=True)
        unfiltered = engine.check_text(text, "<string>", cfg, prefilter=False)
        safe = alloc_lint.fix_source(text, config=cfg, unsafe_fixes=False)
        unsafe = alloc_lint.fix_source(text, config=cfg, unsafe_fixes=True) if run_unsafe else None
    except Exception:  # noqa: BLE001: the tool must not raise on a valid program
        verdict.crash = traceback.format_exc(limit=6)
        return verdict
    verdict.prefilter_miss = len(unfiltered) > len(filtered)
    verdict.silent_no_fix = sum(1 for d in diagnostics if not d.fixes and not d.no_fix_reason)
    if not diagnostics:
        verdict.status = "not-detected"
    elif safe.text != text:
        verdict.status = "fixed-safe"
    elif unsafe is not None and unsafe.text != text:
        verdict.status = "fixed-unsafe-only"
    else:
        verdict.status = "not-fixed"
    if verdict.status in ("not-detected", "not-fixed") and not (unsafe and unsafe.text != text):
        return verdict

    original = run_program(text, meta)
    if original.warnings:  # warn-once warnings fire in the first run only: compare against a second
        original = run_program(text, meta)
    verdict.original_raised = original.exception
    outcomes = {}
    for mode, fixed in (("safe", safe), ("unsafe", unsafe)):
        if fixed is None:
            continue
        result = ModeResult(fixed.text, fixed.text != text, _fix_forms(diagnostics, mode == "unsafe"),
                            error=fixed.error)
        if result.changed and static:
            try:
                result.static = _static_problems(text, fixed, cfg, mode == "unsafe", meta.get("noqa_temps", []))
            except Exception:  # noqa: BLE001
                result.static = ["tool raised on the rewrite: " + traceback.format_exc(limit=4)]
        if result.changed and not any("does not parse" in s for s in result.static):
            if fixed.text not in outcomes:
                after = run_program(fixed.text, meta)
                outcomes[fixed.text] = (differences(original, after), peak_increase(original, after),
                                        explain(original, after))
            result.diffs, result.peak, result.detail = outcomes[fixed.text]
            if meta.get("check_peak") and result.peak:  # a regression case that pins peak memory
                result.diffs = result.diffs + [result.peak]
        setattr(verdict, mode, result)
    return verdict

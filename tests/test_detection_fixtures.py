"""Detection fixtures: expectations are written beside the code they describe.

A line ending in `# expect: ALC001 [fix=FORM]` must get exactly one ALC001
diagnostic, whose call starts on that line; every other line must get none.
"""
import ast
import re
from pathlib import Path

import pytest

from alloc_lint import check_source
from alloc_lint.edits import Wrap

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "alc001").glob("*.py"))
EXPECT = re.compile(r"# expect: (ALC\d{3})(?: fix=([a-z-]+)((?:\+(?:guard|shape-guard|reinit))*))?\s*$")
FIX_FORMS = {
    "swap": [("safe", "swap")],
    "pingpong": [("unsafe", "swap"), ("safe", "pingpong")],
    "pingpong-only": [("safe", "pingpong")],
    "none": [],
    # No safe fix (an unknown callee or use): the same forms, all unsafe.
    "unsafe-swap": [("unsafe", "swap")],
    "unsafe-pingpong": [("unsafe", "swap"), ("unsafe", "pingpong")],
    "unsafe-pingpong-only": [("unsafe", "pingpong")],
}


def expectations(text):
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = EXPECT.search(line)
        if match:
            found[number] = (match.group(1), match.group(2), set(filter(None, match.group(3).split("+"))))
    return found


def test_fixture_counts():
    positives = negatives = 0
    for path in FIXTURES:
        text = path.read_text()
        positives += len(expectations(text))
        negatives += text.count("\ndef ") + text.count("\nasync def ") if "negative" in path.name else 0
    assert positives >= 15 and negatives >= 15


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture(path):
    text = path.read_text()
    expected = expectations(text)
    diagnostics = check_source(text, str(path))
    got = {}
    for d in diagnostics:
        assert d.line not in got, f"two diagnostics on line {d.line}"
        got[d.line] = d
    lines = text.splitlines()
    missing = {n: lines[n - 1].strip() for n in expected if n not in got}
    unexpected = {n: lines[n - 1].strip() for n in got if n not in expected}
    assert not missing and not unexpected, f"missing: {missing}\nunexpected: {unexpected}"
    wrong_fix = {}
    for number, (code, form, extras) in expected.items():
        d = got[number]
        assert d.code == code
        # The range covers exactly the allocation call.
        segment = "\n".join(lines[number - 1:d.end_line])
        segment = segment[d.column - 1:len(segment) - len(lines[d.end_line - 1]) + d.end_column - 1]
        assert isinstance(ast.parse(f"({segment})", mode="eval").body, ast.Call), segment
        if form is not None:
            actual = [(f.applicability, f.form) for f in d.fixes]
            wraps = [op for f in d.fixes for op in f.operations if isinstance(op, Wrap)]
            got_extras = {"guard"} if any(".stride() != " in op.header for op in wraps) else \
                {"shape-guard"} if any(".shape != " in op.header for op in wraps) else set()
            got_extras |= {"reinit"} if any(op.orelse for op in wraps) else set()
            if actual != FIX_FORMS[form] or got_extras != extras:
                wrong_fix[number] = (form, extras, actual, got_extras, lines[number - 1].strip())
    assert not wrong_fix, wrong_fix


# --- the text prefilter skips no file that has a finding -----------------------------------


def _functions(path):
    """Each top-level function of a fixture file, alone in a module (a file
    holding one case is where a prefilter miss shows)."""
    text = path.read_text()
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    header = "".join(lines[:min(n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)))
                             - 1])
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, header + "".join(lines[node.lineno - 1:node.end_lineno])


CASES = [(f"{path.stem}:{name}", source) for path in FIXTURES for name, source in _functions(path)]
PREFILTER_GAPS: dict = {}  # spellings the text prefilter (analysis/prefilter.py) does not accept yet


@pytest.mark.parametrize("source", [
    pytest.param(source, id=name, marks=[pytest.mark.xfail(strict=True, reason=PREFILTER_GAPS[name])]
                 if name in PREFILTER_GAPS else [])
    for name, source in CASES])
def test_prefilter_keeps_every_finding(source):
    from alloc_lint import Config, engine

    with_prefilter = engine.check_text(source, "case.py", Config(), prefilter=True)
    without = engine.check_text(source, "case.py", Config(), prefilter=False)
    assert [d.line for d in with_prefilter] == [d.line for d in without]

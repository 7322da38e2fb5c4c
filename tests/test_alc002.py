"""ALC002 concat-grows-in-loop: detection fixtures (expectations written beside
the code), the text predicate's soundness, and the rule page."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from alloc_lint import check_source
from alloc_lint.config import Config
from alloc_lint.rules.alc002_concat_grows_in_loop import ConcatGrowsInLoop

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "alc002").glob("*.py"))
EXPECT = re.compile(r"# expect: ALC002(?: fix=(safe|unsafe|none))?\s*$")
ONLY_ALC002 = Config(select=("ALC002",))


def expectations(text):
    return {n: m.group(1) for n, line in enumerate(text.splitlines(), 1) if (m := EXPECT.search(line))}


def test_fixture_counts():
    positives = sum(len(expectations(p.read_text())) for p in FIXTURES)
    negatives = sum(p.read_text().count("\ndef ") for p in FIXTURES if p.name.startswith("negative"))
    assert positives >= 40 and negatives >= 20


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture(path):
    text = path.read_text()
    expected = expectations(text)
    lines = text.splitlines()
    got = {}
    for d in check_source(text, str(path), config=ONLY_ALC002):
        assert d.code == "ALC002" and d.name == "concat-grows-in-loop"
        assert d.line not in got, f"two diagnostics on line {d.line}"
        got[d.line] = d
    missing = {n: lines[n - 1].strip() for n in expected if n not in got}
    unexpected = {n: lines[n - 1].strip() for n in got if n not in expected}
    assert not missing and not unexpected, f"missing: {missing}\nunexpected: {unexpected}"
    wrong_fix = {}
    for number, kind in expected.items():
        d = got[number]
        # The range covers exactly the concatenation call.
        segment = "\n".join(lines[number - 1:d.end_line])
        segment = segment[d.column - 1:len(segment) - len(lines[d.end_line - 1]) + d.end_column - 1]
        assert isinstance(ast.parse(f"({segment})", mode="eval").body, ast.Call), segment
        if kind is not None:
            actual = d.fixes[0].applicability if d.fixes else "none"
            if actual != kind:
                wrong_fix[number] = (kind, actual, lines[number - 1].strip())
    assert not wrong_fix, wrong_fix


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_predicate_keeps_fixtures_with_findings(path):
    text = path.read_text()
    if expectations(text):
        assert ConcatGrowsInLoop.might_match(text, ONLY_ALC002)

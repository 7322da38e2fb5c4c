"""The text prefilter: per-rule predicates (`Rule.might_match`) and the
engine's use of them."""
from __future__ import annotations

import pytest

from alloc_lint import engine
from alloc_lint.config import Config
from alloc_lint.diagnostics import Diagnostic
from alloc_lint.rules import ALL_RULES, Rule

ONE_FINDING = (
    "import torch\n"
    "\n"
    "def run(outs):\n"
    "    acc = torch.zeros_like(outs[0])\n"
    "    for c in outs:\n"
    "        tmp = torch.empty_like(acc)\n"
    "        torch.add(acc, c, out=tmp)\n"
    "        acc = tmp\n"
    "    return acc\n"
)


class _Marker(Rule):
    """A rule that reports line 1 of every file it is run on, with a predicate
    that holds only when the text contains its marker."""

    code, name = "ALC900", "marker"

    def __init__(self, marker: str):
        self.marker = marker
        self.asked = 0

    def might_match(self, text, config):
        self.asked += 1
        return self.marker in text

    def check(self, ctx):
        return [Diagnostic(code=self.code, name=self.name, filename=ctx.filename, line=1, column=1,
                           end_line=1, end_column=1, message=self.marker)]


def test_every_rule_has_a_predicate_and_the_default_keeps_everything():
    for rule in ALL_RULES:
        assert callable(rule.might_match)
    assert Rule().might_match("", Config()) is True


def test_alc001_predicate_is_the_engine_predicate_for_alc001_alone():
    (alc001,) = [r for r in ALL_RULES if r.code == "ALC001"]
    assert alc001.might_match(ONE_FINDING, Config())
    assert not alc001.might_match("import torch\nx = 1\n", Config())
    assert engine.might_match(ONE_FINDING, Config())


def test_a_file_is_parsed_when_any_selected_rules_predicate_holds(monkeypatch):
    first, second = _Marker("AAA"), _Marker("BBB")
    second.code, second.name = "ALC901", "marker-two"
    monkeypatch.setattr(engine, "ALL_RULES", (first, second))
    config = Config(select=("ALC",))
    assert engine.might_match("x = 'BBB'\n", config)
    found = engine.check_text("x = 'BBB'\n", "f.py", config)
    assert sorted(d.code for d in found) == ["ALC900", "ALC901"]  # parsed: every selected rule runs
    assert not engine.might_match("x = 'CCC'\n", config)
    assert engine.check_text("x = 'CCC'\n", "f.py", config) == []
    # A syntax error in a file that no predicate keeps is not seen; with one that keeps it, it is.
    assert engine.check_text("x = (\n", "f.py", config) == []
    with pytest.raises(engine.SourceError):
        engine.check_text("x = ('AAA'\n", "f.py", config)


def test_deselected_rules_predicates_are_not_asked(monkeypatch):
    first, second = _Marker("AAA"), _Marker("BBB")
    second.code, second.name = "ALC901", "marker-two"
    monkeypatch.setattr(engine, "ALL_RULES", (first, second))
    config = Config(select=("ALC900",))
    assert not engine.might_match("x = 'BBB'\n", config)
    assert second.asked == 0
    assert engine.check_text("x = 'AAA'\n", "f.py", config)[0].code == "ALC900"

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
RULE = ConcatGrowsInLoop()


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
        assert RULE.might_match(text, ONLY_ALC002)


# --- the text predicate is sound --------------------------------------------------------

GAPS_IN_BRACKETS = (" ", "\n", "  # note (with 'quotes')\n        ", " \\\n", "\n\n  ", "  # )]\n")
GAPS_OUTSIDE = (" ", " \\\n", "  \\\n    ")


def _respaced(source: str, rng) -> str:
    """The same program with the gaps between tokens of a logical line replaced
    by random blanks, line breaks, comments and continuations (what Python
    allows there)."""
    import io
    import tokenize

    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    layout = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT,
              tokenize.ENDMARKER}
    out, pos, depth = [], 0, 0
    for a, b in zip(tokens, tokens[1:]):
        if a.type == tokenize.OP and a.string in "([{":
            depth += 1
        elif a.type == tokenize.OP and a.string in ")]}":
            depth -= 1
        if a.type in layout or b.type in layout or rng.random() < 0.5:
            continue
        start = offsets[a.end[0] - 1] + a.end[1]
        end = offsets[b.start[0] - 1] + b.start[1]
        out.append(source[pos:start])
        out.append(rng.choice(GAPS_IN_BRACKETS if depth > 0 else GAPS_OUTSIDE))
        pos = end
    out.append(source[pos:])
    return "".join(out)


def _cases(path):
    """Each top-level function or class of a fixture, with the module's imports."""
    text = path.read_text()
    tree = ast.parse(text)
    header = "\n".join(ast.get_source_segment(text, n) for n in tree.body
                       if isinstance(n, (ast.Import, ast.ImportFrom)) or
                       (isinstance(n, ast.Assign) and isinstance(n.value, ast.Attribute)))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For)):
            yield header + "\n\n\n" + ast.get_source_segment(text, node) + "\n"


def _finds(text):
    from alloc_lint import engine

    try:
        return bool(engine.check_text(text, "case.py", ONLY_ALC002, prefilter=False))
    except engine.SourceError:
        return False


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_predicate_keeps_every_case_respaced(path):
    import random

    rng = random.Random(2026)
    checked = 0
    for case in _cases(path):
        for variant in [case] + [_respaced(case, rng) for _ in range(12)]:
            if _finds(variant):
                checked += 1
                assert RULE.might_match(variant, ONLY_ALC002), variant
    assert checked or path.name.startswith("negative")


@pytest.mark.parametrize("variant", [
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = (torch).cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = (\n            torch.cat([acc, x])\n        )\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        (acc) = torch.cat([(acc), x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs: acc = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        y = 1; acc = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc \\\n            = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = None if acc is None else torch.cat([acc, x])\n",
    "from torch import (cat  # join\n    as join)\ndef f(xs, acc):\n    for x in xs:\n        acc = join([acc, x])\n",
    "import torch\nj = (torch\n    .cat)\nk = j\ndef f(xs, acc):\n    for x in xs:\n        acc = k([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        s = '''\ndef g():\n'''\n        acc = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        s = f(a,\nb)\n        acc = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = torch.cat([acc, x], dim=len('#)]'))\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = torch.cat([acc, f'{x})]'])\n",
    "import torch\n# C:\\\nfor x in xs:\n    acc = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    while True:\n        acc: 'torch.Tensor' = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = torch.cat([acc,  # comment\n                         x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = torch.cat([  # comment\n            acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = torch.cat((acc, torch.zeros(1)))\n",
    "import numpy as np\ndef f(xs, acc):\n    for x in xs:\n        acc = np.append(x, acc)\n",
    "import numpy as np\ndef f(xs, acc):\n    for x in xs:\n        acc = np.append(arr=acc, values=x)\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        acc = torch.ｃａｔ([acc, x])\n",
    "import torch\r\ndef f(xs, acc):\r\n    for x in xs:\r\n        acc = torch.cat([acc, x])\r\n",
    "import torch\rdef f(xs, acc):\r    for x in xs:\r        acc = torch.cat([acc, x])\r",
    "import torch\ndef f(xs, acc):\n\tfor x in xs:\n\t\tacc = torch.cat([acc, x])\n",
    "import torch\ndef f(xs, acc):\n    for x in xs:\n        if x:\n            def g(): pass\n        acc = torch.cat([acc, x])\n",
])
def test_predicate_keeps_odd_spellings(variant):
    assert _finds(variant), "the case must be a finding"
    assert RULE.might_match(variant, ONLY_ALC002)


@pytest.mark.parametrize("text", [
    "import torch\nx = torch.cat([a, b])\n",  # no loop
    "import torch\nfor x in xs:\n    pass\nacc = torch.cat([acc, x])\n",  # after the loop
    "import torch\ndef f():\n    for x in xs:\n        out = torch.cat([acc, x])\n",  # another name
    "import torch\ndef f():\n    for x in xs:\n        acc = torch.cat(acc, dim=0)\n",  # not in a list
    "import torch\ndef f():\n    for x in xs:\n        acc = torch.cat([acc[1:], x])\n",  # a slice
    "import torch\ndef f():\n    for x in xs:\n        acc = torch.cat([torch.cat([acc, acc]), x])\n",
    "import torch\ndef f():\n    for x in xs:\n        pass\n\ndef g():\n    acc = torch.cat([acc, x])\n",
    "import torch\ndef f():\n    for x in xs:\n        xs.append(x)\n",  # list.append, no numpy
    "x = 1\n",
])
def test_predicate_skips_plain_non_findings(text):
    assert not _finds(text)
    assert not RULE.might_match(text, ONLY_ALC002)

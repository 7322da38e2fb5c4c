"""Fuzzing the checker and the fixer with programs nobody wrote by hand.

- hypothesmith programs (from the grammar and from LibCST nodes), alone and
  with an ALC001 pattern appended: checking and fixing never raise anything
  but alloc_lint.SourceError, and that only for text `ast.parse` rejects;
  every fix output parses and fixing it again changes nothing.
- Mutated fixtures: pieces of tests/fixtures/alc001/*.py with random
  line-level mutations (delete, duplicate, swap, re-indent, and a few more):
  the same guarantees.
"""
from __future__ import annotations

import ast
import itertools
import os
import warnings
from pathlib import Path

import pytest

hypothesmith = pytest.importorskip("hypothesmith")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from alloc_lint import Config, SourceError, check_source, fix_source  # noqa: E402
from alloc_lint import engine  # noqa: E402

# hypothesmith compiles odd code such as `1()` while generating it.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

FIXTURES = Path(__file__).parent / "fixtures" / "alc001"

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))  # a base profile
SCALE = float(os.environ.get("ALLOC_LINT_FUZZ_SCALE", "1"))  # raise to search longer


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


# Appended to generated modules so that the rule and the fixer have work to do.
PATTERN = '''

import torch as _alloc_lint_torch


def _alloc_lint_pattern(outs, lses):
    acc = _alloc_lint_torch.zeros_like(outs[0])
    acc_lse = _alloc_lint_torch.full_like(lses[0], float("-inf"))
    for c, cl in zip(outs, lses):
        tmp = _alloc_lint_torch.empty_like(acc)  # keep-a
        tmp_lse = _alloc_lint_torch.empty_like(acc_lse)
        merge_attn_states(output=tmp, output_lse=tmp_lse, prefix_output=acc, prefix_lse=acc_lse,
                          suffix_output=c, suffix_lse=cl)
        acc, acc_lse = tmp, tmp_lse  # keep-b
        del tmp, tmp_lse, c
    return acc, acc_lse
'''


def _parses(text: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def _exercise(text: str) -> list | None:
    """Check and fix `text` every way there is; return the diagnostics, or
    None where the text was (rightly) refused with SourceError."""
    parses = _parses(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarnings from compiling odd generated code
        try:
            diagnostics = check_source(text)
            # The text prefilter only skips files that provably have no finding.
            unfiltered = engine.check_text(text, "<string>", Config(), prefilter=False)
        except SourceError:
            assert not parses, "SourceError for text that ast.parse accepts"
            return None
        assert parses or not diagnostics, "diagnostics for text ast.parse rejects"
        assert diagnostics == unfiltered, "the prefilter skipped a file with findings"
        for unsafe in (False, True):
            try:
                result = fix_source(text, unsafe_fixes=unsafe)
            except SourceError:
                assert not parses, "SourceError for text that ast.parse accepts"
                return None
            if result.text != text:
                assert _parses(result.text), f"the fix broke the program:\n{result.text}"
                again = fix_source(result.text, unsafe_fixes=unsafe)
                assert again.text == result.text, "fixing twice changed the text"
                assert again.fixed == 0
    return diagnostics


# --- hypothesmith ------------------------------------------------------------------------


@settings(FUZZ, max_examples=examples(50))
@given(hypothesmith.from_grammar())
def test_grammar_programs(text):
    _exercise(text)


@settings(FUZZ, max_examples=examples(30))
@given(hypothesmith.from_grammar())
def test_grammar_programs_with_a_pattern(text):
    combined = text + PATTERN
    diagnostics = _exercise(combined)
    if diagnostics is None:  # e.g. the generated module ends inside a continuation
        return
    ours = [d for d in diagnostics if "_alloc_lint_torch.empty_like" in d.message]
    assert len(ours) == 2
    fixed = fix_source(combined).text
    assert fixed.count("# keep-a") == fixed.count("# keep-b") == 1
    assert not [d for d in check_source(fixed) if "_alloc_lint_torch.empty_like" in d.message]


@settings(FUZZ, max_examples=examples(10))
@given(hypothesmith.from_node())
def test_libcst_node_programs(text):
    _exercise(text)
    _exercise(text + PATTERN)


# --- mutated fixtures ------------------------------------------------------------------


def _pieces(path: Path) -> tuple[list[str], list[list[str]]]:
    """A fixture file as (header lines, [lines of each top-level case]); each
    case starts at the comment and blank lines above it and runs to the next."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    starts = []
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                             ast.For, ast.AsyncFor, ast.While, ast.With, ast.If)):
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
            while start > 0 and (not lines[start - 1].strip() or lines[start - 1].lstrip().startswith("#")):
                start -= 1
            starts.append(start)
    bounds = [*starts, len(lines)]
    return lines[:starts[0]], [lines[a:b] for a, b in itertools.pairwise(bounds)]


PIECES = {p.name: _pieces(p) for p in sorted(FIXTURES.glob("*.py"))}


def _reindent(line: str, how: str) -> str:
    body = line.lstrip(" \t")
    indent = line[:len(line) - len(body)]
    if how == "deeper":
        return "    " + line
    if how == "shallower":
        return indent[4:] + body if indent.startswith("    ") else indent[1:] + body
    if how == "tab":
        return indent.replace("    ", "\t") + body
    return body  # "flush"


MUTATIONS = ["delete", "duplicate", "swap", "indent", "indent", "formfeed", "formfeed_indent",
             "comment", "blank", "continuation", "bracket_comment"]


@st.composite
def mutated_fixtures(draw):
    name = draw(st.sampled_from(sorted(PIECES)))
    header, pieces = PIECES[name]
    chosen = draw(st.lists(st.sampled_from(range(len(pieces))), min_size=1, max_size=3, unique=True))
    lines = list(header) + [line for i in sorted(chosen) for line in pieces[i]]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(MUTATIONS))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = _reindent(lines[i], draw(st.sampled_from(["deeper", "shallower", "tab", "flush"])))
        elif kind == "formfeed":  # a page break: not a line break to Python
            lines.insert(i, "\x0c\n")
        elif kind == "formfeed_indent":  # Python resets the indentation count at a form feed
            lines[i] = "\x0c" + lines[i]
        elif kind == "continuation":  # `a = b` -> `a = \` + newline + `b`
            lines[i] = lines[i].replace(" = ", " = \\\n        ", 1)
        elif kind == "bracket_comment":  # a comment and a line break inside brackets
            lines[i] = lines[i].replace("(", "(  # fuzz\n        ", 1)
        elif kind == "comment":
            lines.insert(i, "# fuzz\n")
        else:
            lines.insert(i, "\n")
    text = "".join(lines)
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return text.replace("\n", ending)


@settings(FUZZ, max_examples=examples(150))
@given(mutated_fixtures())
def test_mutated_fixtures(text):
    _exercise(text)


@pytest.mark.parametrize("name", sorted(PIECES))
def test_unmutated_fixture_pieces_reassemble(name):
    """The mutation fuzz starts from the real cases: header + pieces is the file."""
    header, pieces = PIECES[name]
    text = (FIXTURES / name).read_text()
    rebuilt = "".join(header) + "".join(line for p in pieces for line in p)
    assert rebuilt == text and len(pieces) > 5


# --- regressions ---------------------------------------------------------------------------

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


def test_cr_line_endings_are_checked():
    """Python (and ast) accept old-Mac `\\r` line endings; the text prefilter,
    which knew only `\\n`, skipped such files."""
    text = ONE_FINDING.replace("\n", "\r")
    assert len(engine.check_text(text, "<string>", Config(), prefilter=False)) == 1
    assert len(check_source(text)) == 1


def test_formfeed_in_indentation_does_not_crash_the_fixer():
    """Python's tokenizer resets the indentation count at a form feed, so ast
    accepts this file and the rule offers a fix; LibCST's tokenizer rejects it.
    fix_source (so `alloc-lint fix`, and `check --format json`) crashed with
    libcst.ParserSyntaxError instead of leaving the file unfixed."""
    text = ONE_FINDING.replace("        tmp =", "\x0c        tmp =")
    ast.parse(text)
    assert len(check_source(text)) == 1
    fix_source(text)  # must not raise


def test_formfeed_in_the_first_block_does_not_crash_the_fixer():
    """A form feed in the file's first indented block becomes part of LibCST's
    default indentation; the fixer failed with ValueError ("Got an invalid
    value for default_indent") when it parsed `tmp = None` with the module's
    parsing config. Found by hypothesmith.from_node()."""
    text = "if True:\n\x0c    pass\n" + ONE_FINDING
    ast.parse(text)
    fixed = fix_source(text).text
    assert fixed != text and _parses(fixed)


@pytest.mark.parametrize("where", ["        acc = tmp", "    for c in outs:", "        tmp = "])
def test_formfeed_in_indentation_is_checked_and_never_crashes(where):
    """A form feed at the start of a line is a blank to Python. When it preceded
    the rebinding, the text prefilter (which allowed only blanks and tabs before
    a statement) skipped the file and lost the finding. Elsewhere the finding is
    reported, and fix_source may leave the file as it is (LibCST and ast
    disagree about the column) but must not raise."""
    text = ONE_FINDING.replace(where, "\x0c" + where)
    ast.parse(text)
    assert len(engine.check_text(text, "<string>", Config(), prefilter=False)) == 1
    assert len(check_source(text)) == 1
    fixed = fix_source(text).text
    assert _parses(fixed) and fix_source(fixed).text == fixed

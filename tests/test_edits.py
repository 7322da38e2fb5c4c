"""The rule-agnostic fix applier (alloc_lint.edits): each operation, what it
keeps (comments, formatting, line endings, indentation), the errors it raises
(FixError and nothing else), and that only the enclosing top-level statement
is parsed with LibCST."""
from __future__ import annotations

import ast
import pickle
import random
from pathlib import Path

import pytest

from alloc_lint import fixer
from alloc_lint.edits import (FixError, InsertAfter, InsertBefore, Replace, Wrap, apply_edits,
                              apply_operations, fix_edits, position)
from alloc_lint.lines import split_lines

SOURCE = '''import torch


def helper(x):
    return x + 1


def run(outs):
    acc = torch.zeros_like(outs[0])
    # about the loop
    for c in outs:  # loop comment
        tmp = torch.empty_like(acc)  # the allocation
        torch.add(acc, c, out=tmp)
        # above the rebinding
        acc = tmp  # rebind
        del tmp  # dropped
    else:
        pass
    total = acc.sum()
    return acc, total
'''


def at(text: str, needle: str) -> tuple[int, int]:
    """Where the statement on the first line containing `needle` starts."""
    for number, line in enumerate(split_lines(text), 1):
        if needle in line:
            return (number, len(line) - len(line.lstrip(" \t")))
    raise AssertionError(needle)


def test_insert_before_moves_comment_lines_above_the_new_code():
    new = apply_operations(SOURCE, [InsertBefore(at(SOURCE, "for c"), "tmp = None")])
    assert "    acc = torch.zeros_like(outs[0])\n    # about the loop\n    tmp = None\n    for c in outs:" in new


def test_insert_after_goes_after_the_whole_compound_statement():
    new = apply_operations(SOURCE, [InsertAfter(at(SOURCE, "for c"), "tmp = None")])
    assert "    else:\n        pass\n    tmp = None\n    total = acc.sum()\n" in new


def test_replace_keeps_comments_above_and_on_the_line():
    new = apply_operations(SOURCE, [Replace(at(SOURCE, "acc = tmp"), "acc, tmp = tmp, acc")])
    assert "        # above the rebinding\n        acc, tmp = tmp, acc  # rebind\n" in new


def test_replace_with_empty_code_deletes_and_hands_comments_on():
    new = apply_operations(SOURCE, [Replace(at(SOURCE, "del tmp"), "")])
    assert "del tmp" not in new
    assert "        acc = tmp  # rebind\n        # dropped\n    else:" in new


def test_deleting_every_statement_of_a_block_leaves_pass():
    text = "def f(x):\n    # why\n    del x  # gone\n"
    new = apply_operations(text, [Replace((3, 4), "")])
    assert new == "def f(x):\n    # why\n    # gone\n    pass\n"


def test_replace_with_a_compound_statement_and_several_statements():
    code = "if tmp is None:\n    tmp = 1\nelse:\n    tmp += 1\nacc = tmp"
    new = apply_operations(SOURCE, [Replace(at(SOURCE, "acc = tmp"), code)])
    assert ("        # above the rebinding\n        if tmp is None:\n            tmp = 1\n        else:\n"
            "            tmp += 1\n        acc = tmp  # rebind\n") in new


def test_wrap_with_body_after_and_else():
    op = Wrap((at(SOURCE, "tmp = torch.empty_like"),), "if tmp is None:", body_after="spare = None",
              orelse="tmp.zero_()")
    new = apply_operations(SOURCE, [op])
    assert ("        if tmp is None:\n            tmp = torch.empty_like(acc)  # the allocation\n"
            "            spare = None\n        else:\n            tmp.zero_()\n"
            "        torch.add(acc, c, out=tmp)\n") in new


def test_wrap_several_statements_with_a_replace_inside():
    ops = [Wrap((at(SOURCE, "tmp = torch.empty_like"), at(SOURCE, "torch.add")), "with torch.no_grad()"),
           Replace(at(SOURCE, "torch.add"), "torch.sub(acc, c, out=tmp)")]
    new = apply_operations(SOURCE, ops)
    assert ("        with torch.no_grad():\n            tmp = torch.empty_like(acc)  # the allocation\n"
            "            torch.sub(acc, c, out=tmp)\n        # above the rebinding\n") in new


def test_comment_lines_above_the_first_wrapped_statement_stay_above_the_header():
    text = "for c in x:\n    # allocate\n    t = f(c)\n    g(t)\n"
    new = apply_operations(text, [Wrap(((3, 4),), "if t is None")])
    assert new == "for c in x:\n    # allocate\n    if t is None:\n        t = f(c)\n    g(t)\n"


def test_two_inserts_before_one_statement_keep_their_order():
    loop = at(SOURCE, "for c")
    new = apply_operations(SOURCE, [InsertBefore(loop, "a = None"), InsertBefore(loop, "b = None")])
    assert "    a = None\n    b = None\n    for c in outs:" in new


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("unit", ["    ", "\t", "  "], ids=["four", "tab", "two"])
def test_new_blocks_follow_the_files_indentation_and_line_endings(newline, unit):
    text = SOURCE.replace("    ", unit).replace("\n", newline)
    ops = [Wrap((at(text, "tmp = torch.empty_like"),), "if tmp is None", orelse="if c is None:\n    pass"),
           InsertBefore(at(text, "for c"), "if True:\n    tmp = None")]
    new = apply_operations(text, ops)
    ast.parse(new)
    assert new.count("\n") == new.count(newline if newline == "\r\n" else "\n")
    if newline == "\n":
        assert "\r" not in new
    for line in split_lines(new):
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        assert indent == unit * (len(indent) // len(unit)), repr(line)
    assert f"{unit}if True:{newline}{unit * 2}tmp = None{newline}" in new
    assert f"{unit * 3}if c is None:{newline}{unit * 4}pass{newline}" in new


def test_every_line_outside_the_changed_statements_is_kept():
    new = apply_operations(SOURCE, [Replace(at(SOURCE, "acc = tmp"), "acc, tmp = tmp, acc")])
    old_lines, new_lines = SOURCE.splitlines(), new.splitlines()
    changed = at(SOURCE, "acc = tmp")[0] - 1
    assert new_lines[:changed] == old_lines[:changed]
    assert new_lines[changed + 1:] == old_lines[changed + 1:]


def test_module_level_statements_and_decorated_definitions():
    text = "import x\n\n@dec\ndef f():\n    pass\n\nfor a in b:\n    c = a\n"
    tree = ast.parse(text)
    lines = split_lines(text)
    ops = [InsertBefore(position(tree.body[1], lines), "y = 1"),  # addressed where `def` is, as ast says
           InsertAfter(position(tree.body[2], lines), "del c")]
    assert apply_operations(text, ops) == "import x\n\ny = 1\n@dec\ndef f():\n    pass\n\nfor a in b:\n    c = a\ndel c\n"


def test_position_counts_characters():
    text = "if x:\n    é = 1; y = 2\n"
    stmt = ast.parse(text).body[0].body[1]
    assert stmt.col_offset == len("    é = 1; ".encode())
    assert position(stmt, split_lines(text)) == (2, len("    é = 1; "))


BAD = [
    ([Replace((3, 0), "x")], "no statement"),  # a comment line
    ([Replace((11, 5), "x")], "no statement"),  # inside a statement
    ([Replace((99, 0), "x")], "no statement"),
    ([Replace(("a", 0), "x")], "position"),
    ([Replace((11, 4), "x"), Replace((11, 4), "y")], "two replacements"),
    ([Replace((11, 4), "x"), Replace((12, 8), "y")], "inside a statement that is replaced"),
    ([Wrap(((12, 8), (15, 8)), "if t")], "adjacent"),  # a statement between them
    ([Wrap(((13, 8), (12, 8)), "if t")], "adjacent"),  # out of order
    ([Wrap(((9, 4), (12, 8)), "if t")], "adjacent"),  # two blocks
    ([Wrap((), "if t")], "no statements"),
    ([Wrap(((12, 8),), "with t", orelse="x = 1")], "else"),
    ([Wrap(((12, 8),), "x = 1")], "header"),
    ([Replace((11, 4), "x = (")], "could not apply"),  # does not parse
    ([Replace((11, 4), "x =\n  1")], "could not apply"),
    (["not an operation"], "could not apply"),
]


@pytest.mark.parametrize("ops, message", BAD, ids=[m + str(i) for i, (_, m) in enumerate(BAD)])
def test_what_cannot_be_done_raises_fix_error_only(ops, message):
    with pytest.raises(FixError, match=message):
        apply_operations(SOURCE, ops)


def test_an_elif_is_not_a_statement():
    text = "def f(x):\n    if x:\n        pass\n    elif x is None:\n        pass\n"
    assert ast.parse(text).body[0].body[0].orelse[0].lineno == 4  # ast calls it an `if` statement
    with pytest.raises(FixError, match="clause"):
        apply_operations(text, [InsertBefore((4, 4), "y = 1")])


def test_a_statement_sharing_its_line_cannot_be_replaced_or_wrapped():
    text = "def f():\n    a = 1; b = 2\n"
    for op in (Replace((2, 4), "c = 3"), Wrap(((2, 4),), "if x")):
        with pytest.raises(FixError, match="shares its line"):
            apply_operations(text, [op])
    assert apply_operations(text, [InsertBefore((2, 4), "c = 3")]) == "def f():\n    c = 3\n    a = 1; b = 2\n"


def test_text_libcst_cannot_read_raises_fix_error():
    text = "def f():\n\f    x = 1\n\f    y = 2\n"  # a form feed in the indentation
    try:
        new = apply_operations(text, [Replace((3, 5), "y = 3")])
    except FixError:
        return
    ast.parse(new)


def test_only_the_enclosing_top_level_statement_is_parsed(monkeypatch):
    filler = "".join(f"def other{i}():\n    return {i}\n\n\n" for i in range(200))
    text = filler + SOURCE + filler
    parsed = []
    real = fixer.cst.parse_module
    monkeypatch.setattr(fixer.cst, "parse_module", lambda code, *a, **k: parsed.append(code) or real(code, *a, **k))
    fixer._parsed.cache_clear()
    new = apply_operations(text, [Replace(at(text, "acc = tmp"), "acc, tmp = tmp, acc")])
    assert new == filler + SOURCE.replace("acc = tmp  #", "acc, tmp = tmp, acc  #") + filler
    segment = next(code for code in parsed if code.startswith("def run"))
    assert segment == SOURCE[SOURCE.index("def run"):]


def test_fix_edits_are_line_edits_of_the_result():
    filler = "x = 1\n" * 50
    text = filler + SOURCE + filler
    ops = [InsertBefore(at(text, "for c"), "tmp = None"), Replace(at(text, "del tmp"), "")]
    edits = fix_edits(text, ops)
    assert apply_edits(text, edits) == apply_operations(text, ops)
    assert all(50 < e.start_line <= 50 + SOURCE.count("\n") for e in edits)


def test_operations_are_data():
    ops = (InsertBefore((1, 0), "a = 1"), Wrap(((2, 4), (3, 4)), "if x", "b = 2", "c = 3"), Replace((5, 0), ""))
    assert pickle.loads(pickle.dumps(ops)) == ops
    assert hash(ops) == hash(pickle.loads(pickle.dumps(ops)))


def _statements(tree):
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            value = getattr(node, field, None)
            for stmt in value if isinstance(value, list) else []:
                if isinstance(stmt, ast.stmt):
                    yield stmt


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "alloc_lint").rglob("*.py"))[:12],
                         ids=lambda p: p.name)
def test_random_inserts_into_real_files_parse_and_keep_every_line(path):
    """Attack: operations at random statements of real files (this project's own)."""
    text = path.read_text()
    lines = split_lines(text)
    tree = ast.parse(text)
    stmts = list(_statements(tree))
    alone = [s for s in stmts if not lines[s.lineno - 1][:s.col_offset].strip()
             and sum(1 for t in stmts if t.lineno == s.lineno) == 1]
    rng = random.Random(path.name)
    for _ in range(5):
        chosen = rng.sample(alone, min(3, len(alone)))
        ops = [rng.choice([InsertBefore, InsertAfter])(position(s, lines), "marker_statement = None")
               for s in chosen]
        try:
            new = apply_operations(text, ops)
        except FixError:
            continue  # e.g. a docstring's position; what matters is no other exception
        ast.parse(new)
        kept = [line for line in new.splitlines() if "marker_statement" not in line]
        assert kept == text.splitlines()
        assert new.count("marker_statement = None") == len(ops)

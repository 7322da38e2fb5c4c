"""Fixes keep formatter gates green (issue 9): a line a fix writes or moves
that is longer than the project's line length is wrapped as `ruff format`
(and black) would write it.

Where a `ruff` executable is found (PATH, or $BENCH_VENV/bin as bench/ sets it
up), fixed files of ruff-formatted programs must pass `ruff format --check`;
without it, the same cases are checked against the layouts ruff gave.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alloc_lint import Config, check_source, fix_source
from alloc_lint.api import attach_edits
from alloc_lint.config import discover, load
from alloc_lint.edits import Replace, Wrap, apply_edits, apply_operations
from alloc_lint.linewrap import wrap

RUFF = shutil.which("ruff") or str(Path(os.environ.get("BENCH_VENV", "/work/venv-bench")) / "bin" / "ruff")
HAVE_RUFF = os.path.exists(RUFF)


def ruff_format(text: str, line_length: int = 88) -> str:
    return subprocess.run([RUFF, "format", "--isolated", "--line-length", str(line_length), "-"],
                          input=text, capture_output=True, text=True, check=True).stdout


# (long line, what ruff format 0.17 writes for it; indentation 12, limit 88)
CASES = [
    ("output_lse, output_lse_tmp, output_lse_tmp_alt = output_lse_tmp, output_lse_tmp_alt, output_lse_tmp"
     "  # rebind",
     ["output_lse, output_lse_tmp, output_lse_tmp_alt = (", "    output_lse_tmp,", "    output_lse_tmp_alt,",
      "    output_lse_tmp,", ")  # rebind"]),
    # The targets do not fit before `= (`: they go in parentheses, the value after them.
    ("accum_output_with_a_long_name, accum_lse_with_a_long_name, tmp_output, tmp_output_alt, tmp_lse, "
     "tmp_lse_alt = tmp_output, tmp_lse, tmp_output_alt, tmp_output, tmp_lse_alt, tmp_lse",
     ["(", "    accum_output_with_a_long_name,", "    accum_lse_with_a_long_name,", "    tmp_output,",
      "    tmp_output_alt,", "    tmp_lse,", "    tmp_lse_alt,",
      ") = tmp_output, tmp_lse, tmp_output_alt, tmp_output, tmp_lse_alt, tmp_lse"]),
    ("accum_output, accum_lse, tmp_output, tmp_output_alt, tmp_lse, tmp_lse_alt = tmp_output, tmp_lse, "
     "tmp_output_alt, tmp_output, tmp_lse_alt, tmp_lse  # c",
     ["(", "    accum_output,", "    accum_lse,", "    tmp_output,", "    tmp_output_alt,", "    tmp_lse,",
      "    tmp_lse_alt,", ") = (", "    tmp_output,", "    tmp_lse,", "    tmp_output_alt,", "    tmp_output,",
      "    tmp_lse_alt,", "    tmp_lse,", ")  # c"]),
    ("output_tmp_very_long_name = torch.empty_like(output_accumulator_with_long_name)  # expect: ALC001",
     ["output_tmp_very_long_name = torch.empty_like(", "    output_accumulator_with_long_name",
      ")  # expect: ALC001"]),
    ("output_tmp_very_long_name_for_real = torch.empty_like(output_accumulator_with_long_name, "
     "dtype=torch.float32, device=output_accumulator_with_long_name.device)",
     ["output_tmp_very_long_name_for_real = torch.empty_like(", "    output_accumulator_with_long_name,",
      "    dtype=torch.float32,", "    device=output_accumulator_with_long_name.device,", ")"]),
    ("if output_tmp_very_long_name is None or output_tmp_very_long_name.shape != accumulator.shape "
     "or output_tmp_very_long_name.dtype != accumulator.dtype:",
     ["if (", "    output_tmp_very_long_name is None", "    or output_tmp_very_long_name.shape != accumulator.shape",
      "    or output_tmp_very_long_name.dtype != accumulator.dtype", "):"]),
    # `elif (` and `while (` are longer than the indentation they add: the condition may fit.
    ("elif tmp is None or tmp.shape != accum.shape or tmp.dtype != accumulator.dty:",
     ["elif (", "    tmp is None or tmp.shape != accum.shape or tmp.dtype != accumulator.dty", "):"]),
]


@pytest.mark.parametrize("line, expected", CASES, ids=[str(i) for i in range(len(CASES))])
def test_wrapped_as_ruff_format_writes_it(line, expected):
    indent = " " * 12
    got = wrap(indent + line, "    ", 88)
    assert got == [indent + x for x in expected]
    if HAVE_RUFF:
        body = "\n".join(got) + ("\n" + indent + "    pass" if line.endswith(":") else "") + "\n"
        if line.startswith("elif"):
            body = indent + "if q:\n" + indent + "    pass\n" + body
        program = "def f():\n    for x in y:\n        if z:\n" + body
        assert ruff_format(program) == program


def test_chained_assignments_of_a_constant_become_one_per_name():
    """ruff would write `a = ... = (\\n    e\\n) = None`; one statement per name is
    the same program, reads better, and ruff leaves it alone."""
    got = wrap(" " * 8 + "tmp_output = tmp_output_alt = tmp_lse = tmp_lse_alt = tmp_extra = tmp_extra_alt = None",
               "    ", 88)
    assert got == [" " * 8 + f"{name} = None" for name in
                   ("tmp_output", "tmp_output_alt", "tmp_lse", "tmp_lse_alt", "tmp_extra", "tmp_extra_alt")]


@pytest.mark.parametrize("line", [
    "x = (aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa or b), cccccccccccccccccccccccccccccccccccccccccccccc",
    "if (a or b) and ccccccccccccccccccccccccccccccccccccccccccccccccc and ddddddddddddddddddddddddddddddd:",
    "print('a very long string that cannot be split at all by any formatter whatsoever, not even ruff')",
    "value = some_object.attribute_one.attribute_two.attribute_three.attribute_four.attribute_5",
])
def test_what_cannot_be_wrapped_the_same_is_left_alone(line):
    got = wrap("    " + line, "    ", 60)
    if got is not None:  # whatever it does, it is the same statement
        assert ast.dump(ast.parse("\n".join(x[4:] for x in got))) == ast.dump(ast.parse(line))


# --- through the fix ---------------------------------------------------------------------

DEEP = '''import torch


class Attention:
    def forward_chunked(self, query, chunks, lses):
        accumulated_attention_output = None
        for chunk_index in range(len(chunks)):
            with torch.no_grad():
                attention_chunk_output, attention_chunk_lse = self.run_chunk(query, chunks, chunk_index)
                if accumulated_attention_output is None:
                    accumulated_attention_output = attention_chunk_output
                    accumulated_attention_lse = attention_chunk_lse
                else:
                    temporary_attention_output = torch.empty_like(accumulated_attention_output)
                    temporary_attention_lse = torch.empty_like(accumulated_attention_lse)
                    merge_attn_states(
                        temporary_attention_output,
                        temporary_attention_lse,
                        accumulated_attention_output,
                        accumulated_attention_lse,
                        attention_chunk_output,
                        attention_chunk_lse,
                    )
                    accumulated_attention_output, accumulated_attention_lse = REBIND
        final = accumulated_attention_output * 2
        return final, accumulated_attention_lse
'''.replace("REBIND", "temporary_attention_output, temporary_attention_lse")


def _formatted(text: str, line_length: int) -> str:
    return ruff_format(text, line_length) if HAVE_RUFF else text


@pytest.mark.parametrize("line_length", [88, 100, 120])
@pytest.mark.parametrize("unsafe", [False, True], ids=["safe", "unsafe"])
def test_fixed_lines_fit_and_pass_ruff_format(line_length, unsafe):
    original = _formatted(DEEP, line_length)
    config = Config(line_length=line_length)
    result = fix_source(original, config=config, unsafe_fixes=unsafe)
    assert result.fixed == 2 and result.error is None
    changed = [line for line in result.text.splitlines() if line not in original.splitlines()]
    assert changed and all(len(line) <= line_length for line in changed), changed
    assert check_source(result.text) == []
    if HAVE_RUFF:
        assert ruff_format(result.text, line_length) == result.text
    # JSON/SARIF edits are the same rewrite.
    found = check_source(original)
    attach_edits(original, found, line_length)
    fix = found[0].fix_for(unsafe)
    assert apply_edits(original, fix.edits) == result.text


def test_without_a_limit_nothing_is_wrapped():
    line = "x, y = " + "a" * 60 + ", " + "b" * 60
    code = "def f(a, b):\n    z = 1\n"
    assert apply_operations(code, [Replace((2, 4), line)], None) == f"def f(a, b):\n    {line}\n"
    wrapped = apply_operations(code, [Replace((2, 4), line)], 88)
    assert wrapped == f"def f(a, b):\n    x, y = (\n        {'a' * 60},\n        {'b' * 60},\n    )\n"


def test_continuation_lines_are_indented_like_their_block():
    """The unit is the block's (tabs here), not the file's first indentation
    (two spaces, in a helper above)."""
    text = "def helper():\n  return 0\n\n\ndef f(a, b):\n\tfor x in a:\n\t\tz = 1\n"
    line = "first_long_name, second_long_name = " + "a" * 40 + ", " + "b" * 40
    new = apply_operations(text, [Replace((7, 2), line)], 88)
    assert new.endswith("\t\tfirst_long_name, second_long_name = (\n\t\t\t" + "a" * 40 + ",\n\t\t\t"
                        + "b" * 40 + ",\n\t\t)\n")


def test_long_lines_the_fix_did_not_write_are_left_alone():
    long_call = "    print(" + ", ".join(["argument_number_%d" % i for i in range(8)]) + ")\n"
    text = "def f(x):\n" + long_call + "    y = 1\n"
    new = apply_operations(text, [Replace((3, 4), "y = 2")], 88)
    assert new == "def f(x):\n" + long_call + "    y = 2\n"


def test_a_long_line_inside_a_moved_string_is_not_touched():
    text = 'def f(x):\n    s = """\n' + "word " * 30 + '\n"""\n    return s\n'
    new = apply_operations(text, [Wrap(((2, 4),), "if x")], 40)
    assert ("word " * 30) + "\n" in new


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("table, expected", [
    ("[tool.ruff]\nline-length = 100\n", 100),
    ("[tool.black]\nline-length = 79\n", 79),
    ("[tool.ruff]\nline-length = 120\n[tool.black]\nline-length = 79\n", 120),
    ("[tool.ruff.lint]\nselect = ['E']\n", 88),
    ("[tool.ruff]\nline-length = 'wide'\n", 88),
])
def test_line_length_from_pyproject(tmp_path, table, expected):
    (tmp_path / "pyproject.toml").write_text(table)
    assert discover(tmp_path).line_length == expected
    (tmp_path / "pyproject.toml").write_text(table + "[tool.alloc-lint]\nselect = ['ALC']\n")
    assert load(tmp_path / "pyproject.toml").line_length == expected
    assert discover(tmp_path).line_length == expected


def test_fix_command_uses_the_projects_line_length(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    path = tmp_path / "attention.py"
    path.write_text(DEEP)
    subprocess.run([sys.executable, "-m", "alloc_lint.cli", "fix", "attention.py"], cwd=tmp_path,
                   capture_output=True, check=True)
    fixed = path.read_text()
    changed = [line for line in fixed.splitlines() if line not in DEEP.splitlines()]
    assert max(len(line) for line in DEEP.splitlines()) > 100
    assert changed and all(len(line) <= 100 for line in changed), changed


# --- real code (fetched by bench/fetch.py into a cache outside the repo) ----------------

CACHE = Path(os.environ.get("ALLOC_LINT_CACHE") or "~/.cache/alloc-lint").expanduser() / "src"
REAL = [
    "vllm-0.33.0/vllm/v1/attention/backends/rocm_aiter_fa.py",
    "vllm-0.21.0/vllm/model_executor/layers/attention/mla_attention.py",
    "sglang-0.5.23/sglang/srt/models/deepseek_common/attention_forward_methods/forward_mha.py",
    "sglang-0.5.23/sglang/srt/models/dots3_common/modeling.py",
]


@pytest.mark.parametrize("unsafe", [False, True], ids=["safe", "unsafe"])
@pytest.mark.parametrize("name", REAL, ids=lambda n: n.split("/")[0] + ":" + n.rsplit("/", 1)[-1])
def test_fixed_real_files_pass_ruff_format(name, unsafe):
    path = CACHE / name
    if not path.exists():
        pytest.skip(f"{path} not fetched (python bench/fetch.py {name.split('/')[0].replace('-', '==', 1)})")
    if not HAVE_RUFF:
        pytest.skip("no ruff executable")
    original = path.read_text()
    assert ruff_format(original) == original  # the release is ruff-formatted
    result = fix_source(original, str(path), unsafe_fixes=unsafe)
    assert result.fixed and result.error is None
    changed = [line for line in result.text.splitlines() if line not in original.splitlines()]
    assert changed and all(len(line) <= 88 for line in changed)
    assert ruff_format(result.text) == result.text

"""The `alloc-lint` command line, run as a user runs it: in a subprocess, on
files in a temporary folder. Exit codes, every output format, selection,
`noqa`, configuration, awkward input, and `fix`."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The vLLM-style merge loop: two findings (output and its lse, one group), a
# safe ping-pong fix and the upstream swap offered only as unsafe.
FINDING = '''\
import torch

def merge_chunks(chunks, lses):
    output = None
    for attn_output, attn_lse in zip(chunks, lses):
        if output is None:
            output, output_lse = attn_output, attn_lse
        else:
            output_tmp = torch.empty_like(output)
            output_lse_tmp = torch.empty_like(output_lse)
            merge_attn_states(output=output_tmp, output_lse=output_lse_tmp,
                              prefix_output=output, prefix_lse=output_lse,
                              suffix_output=attn_output, suffix_lse=attn_lse)
            output = output_tmp
            output_lse = output_lse_tmp
    return output, output_lse
'''
ALLOC_LINES = {9: "torch.empty_like(output)", 10: "torch.empty_like(output_lse)"}

# An accumulator owned by the function: the swap is the safe fix.
SWAP_FINDING = '''\
import torch

def windowed_sum(x, window):
    acc = torch.zeros_like(x[:window])
    start = window
    while start < x.shape[0]:
        acc_tmp = torch.empty_like(acc)
        torch.add(acc, x[start:start + window], out=acc_tmp)
        acc = acc_tmp
        start += window
    return acc
'''

# Reported, but with no fix (two statements share the allocation's line); the
# line holds non-ASCII text before the call, which is split over two lines.
NO_FIX_FINDING = '''\
import torch

def merge_chunks(chunks):
    acc = chunks[0].clone()
    for c in chunks[1:]:
        é = "ünïcode"; tmp = torch.empty_like(
            acc)
        merge_attn_states(tmp, acc, c)
        acc = tmp
    return acc
'''

CLEAN = '''\
import torch

def merge_chunks(chunks):
    acc = chunks[0].clone()
    for c in chunks[1:]:
        acc = acc + c
    return acc
'''

# Holds the pattern, so no text prefilter can skip it, then fails to parse.
SYNTAX_ERROR = FINDING + "\n\ndef broken(:\n    pass\n"


def alloc_lint(*args, cwd, check=None):
    """Run the CLI; `check` asserts the exit code."""
    proc = subprocess.run([sys.executable, "-m", "alloc_lint.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def physical_lines(text: str) -> list[str]:
    """Lines as Python numbers them: only \\r\\n, \\r and \\n end a line."""
    return re.split(r"\r\n|\r|\n", text)


def span(text: str, line: int, column: int, end_line: int, end_column: int) -> str:
    """The source text between two 1-based (line, character column) positions."""
    lines = physical_lines(text)
    if line == end_line:
        return lines[line - 1][column - 1:end_column - 1]
    return "\n".join([lines[line - 1][column - 1:], *lines[line:end_line - 1],
                      lines[end_line - 1][:end_column - 1]])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


# --- exit codes -----------------------------------------------------------------------


def test_clean_file_exits_0_and_says_so(tmp_path):
    write(tmp_path / "clean.py", CLEAN)
    proc = alloc_lint("check", "clean.py", cwd=tmp_path, check=0)
    assert proc.stdout == "All checks passed!\n" and proc.stderr == ""
    proc = alloc_lint("check", "-q", "clean.py", cwd=tmp_path, check=0)
    assert proc.stdout == proc.stderr == ""


def test_findings_exit_1(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    alloc_lint("check", "merge.py", cwd=tmp_path, check=1)


def test_paths_default_to_cwd(tmp_path):
    write(tmp_path / "pkg" / "merge.py", FINDING)
    proc = alloc_lint("check", cwd=tmp_path, check=1)
    assert "merge.py:9:26: ALC001" in proc.stdout


def test_exit_zero_flag(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", "--exit-zero", "merge.py", cwd=tmp_path, check=0)
    assert "ALC001" in proc.stdout


def test_syntax_error_exits_2_with_one_line(tmp_path):
    write(tmp_path / "broken.py", SYNTAX_ERROR)
    proc = alloc_lint("check", "broken.py", cwd=tmp_path, check=2)
    assert proc.stdout == "1 file could not be checked (see the errors above).\n"  # never "All checks passed!"
    assert proc.stderr.splitlines() == error_lines(proc.stderr)
    [line] = proc.stderr.splitlines()
    # `file:line:column:` first, so that terminals and editors jump to it
    assert line == "broken.py:19:12: error: syntax error: invalid syntax", line


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_bad_files_do_not_stop_the_others(tmp_path, fmt):
    write(tmp_path / "a_merge.py", FINDING)
    write(tmp_path / "b_broken.py", SYNTAX_ERROR)
    (tmp_path / "c_undecodable.py").write_bytes(b"import torch\nname = 'caf\xe9'\n")
    write(tmp_path / "d_merge.py", SWAP_FINDING)
    proc = alloc_lint("check", "--format", fmt, "a_merge.py", "b_broken.py", "c_undecodable.py",
                      "missing.py", "d_merge.py", cwd=tmp_path, check=2)
    bad = ["b_broken.py", "c_undecodable.py", "missing.py"]
    if fmt == "github":  # errors become annotations on stdout
        assert proc.stderr == ""
        errors = [line for line in proc.stdout.splitlines() if line.startswith("::error ")]
        assert [re.search(r"file=([^,]+)", e).group(1) for e in errors] == bad
    else:
        errors = proc.stderr.splitlines()
        assert len(errors) == 3, proc.stderr
        for line, name in zip(errors, bad):
            where = f"{name}:19:12" if name == "b_broken.py" else name
            assert line.startswith(f"{where}: error: "), line
    # the files after the bad ones were still checked
    assert "a_merge.py" in proc.stdout and "d_merge.py" in proc.stdout
    if fmt == "json":
        found = json.loads(proc.stdout)
        assert {d["filename"] for d in found if d["code"]} == {"a_merge.py", "d_merge.py"}
        # errors are entries too (Ruff's convention: code null), with their position
        errors = [(d["filename"], d["location"], d["level"], d["fix"]) for d in found if d["code"] is None]
        assert errors == [("b_broken.py", {"row": 19, "column": 12}, "error", None),
                          ("c_undecodable.py", {"row": 1, "column": 1}, "error", None),
                          ("missing.py", {"row": 1, "column": 1}, "error", None)]
        assert "syntax error" in next(d["message"] for d in found if d["filename"] == "b_broken.py")
    if fmt == "sarif":
        run = json.loads(proc.stdout)["runs"][0]
        assert run["invocations"][0]["executionSuccessful"] is False
        assert len(run["results"]) == 3
        notes = run["invocations"][0]["toolExecutionNotifications"]
        regions = {n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]:
                   n["locations"][0]["physicalLocation"].get("region") for n in notes}
        assert regions == {"b_broken.py": {"startLine": 19, "startColumn": 12},
                           "c_undecodable.py": None, "missing.py": None}
    if fmt == "github":
        assert "::error file=b_broken.py,line=19,col=12,title=alloc-lint::syntax error" in proc.stdout


def test_missing_path_exits_2(tmp_path):
    proc = alloc_lint("check", "nope.py", cwd=tmp_path, check=2)
    assert proc.stderr.splitlines() == ["nope.py: error: no such file or directory"]


def test_unknown_format_is_a_usage_error(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", "--format", "xml", "merge.py", cwd=tmp_path, check=2)
    assert "invalid choice: 'xml'" in proc.stderr and proc.stdout == ""


def test_no_command_is_a_usage_error(tmp_path):
    proc = alloc_lint(cwd=tmp_path, check=2)
    assert "usage: alloc-lint" in proc.stderr


def test_missing_config_file_exits_2(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", "--config", "nope.toml", "merge.py", cwd=tmp_path, check=2)
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "nope.toml" in line and "cannot read config" in line


def test_invalid_toml_in_config_exits_2(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / "pyproject.toml", "[tool.alloc-lint\nexclude = [\n")
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert "pyproject.toml" in line and "invalid TOML" in line


def test_unknown_config_key_exits_2(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / "lint.toml", '[tool.alloc-lint]\nextra-alocators = ["x.y"]\n')
    proc = alloc_lint("check", "--config", "lint.toml", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert "unknown key" in line and "extra-alocators" in line


def test_config_value_of_wrong_type_exits_2(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / "pyproject.toml", "[tool.alloc-lint]\nexclude = 3\n")
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert "exclude" in line and "list of strings" in line


# --- output formats -------------------------------------------------------------------


def test_text_format(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=1)
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"merge\.py:9:26: ALC001 \[\*\] `torch\.empty_like` allocates `output_tmp` .*", lines[0])
    assert re.fullmatch(r"merge\.py:10:30: ALC001 \[\*\] `torch\.empty_like` allocates `output_lse_tmp` .*",
                        lines[1])
    assert "Found 2 findings." in lines
    assert proc.stderr == ""


def test_json_format(tmp_path):
    sources = {"merge.py": FINDING, "swap.py": SWAP_FINDING, "nofix.py": NO_FIX_FINDING}
    for name, text in sources.items():
        write(tmp_path / name, text)
    proc = alloc_lint("check", "--format", "json", *sources, cwd=tmp_path, check=1)
    found = json.loads(proc.stdout)
    assert isinstance(found, list)
    assert sorted((d["filename"], d["line"]) for d in found) == [
        ("merge.py", 9), ("merge.py", 10), ("nofix.py", 6), ("swap.py", 7)]
    for d in found:
        assert {"code", "filename", "line", "column", "end_line", "end_column", "message", "fix"} <= set(d)
        assert d["code"] == "ALC001"
        assert isinstance(d["message"], str) and d["message"]
        # 1-based columns: the range is exactly the allocation call
        call = span(sources[d["filename"]], d["line"], d["column"], d["end_line"], d["end_column"])
        assert call.startswith("torch.empty_like(") and call.endswith(")"), call
        assert isinstance(ast.parse(call, mode="eval").body, ast.Call)
        if d["fix"] is not None:
            assert d["fix"]["applicability"] in ("safe", "unsafe")
            assert isinstance(d["fix"]["message"], str) and d["fix"]["message"]
    by_place = {(d["filename"], d["line"]): d for d in found}
    assert span(FINDING, 9, by_place["merge.py", 9]["column"], 9, by_place["merge.py", 9]["end_column"]) \
        == ALLOC_LINES[9]
    assert by_place["merge.py", 9]["fix"]["applicability"] == "safe"
    assert by_place["swap.py", 7]["fix"]["applicability"] == "safe"
    nofix = by_place["nofix.py", 6]
    assert nofix["fix"] is None
    assert (nofix["column"], nofix["end_line"], nofix["end_column"]) == (30, 7, 17)  # characters, not bytes


def test_json_on_clean_input_is_an_empty_array(tmp_path):
    write(tmp_path / "clean.py", CLEAN)
    proc = alloc_lint("check", "--format", "json", "clean.py", cwd=tmp_path, check=0)
    assert json.loads(proc.stdout) == []


def test_github_format(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", "--format", "github", "merge.py", cwd=tmp_path, check=1)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("::warning file=merge.py,line=9,col=26,")
    assert lines[1].startswith("::warning file=merge.py,line=10,col=30,")
    for line in lines:
        assert "ALC001" in line.split("::", 2)[2]


def line_starts(text: str) -> list[int]:
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    if starts[-1] != len(text):
        starts.append(len(text))  # the position just past a last line without a newline
    return starts


def apply_replacements(text: str, replacements: list[dict]) -> str:
    """Apply SARIF `replacements` (1-based lines and character columns; a
    region ending at column 1 of a line stops just before that line)."""
    starts = line_starts(text)

    def offset(line, column):
        return starts[line - 1] + column - 1

    edits = []
    for r in replacements:
        region = r["deletedRegion"]
        start = offset(region["startLine"], region.get("startColumn", 1))
        end = offset(region.get("endLine", region["startLine"]), region.get("endColumn", 1))
        edits.append((start, end, r.get("insertedContent", {}).get("text", "")))
    edits.sort(reverse=True)
    for (start, end, _), later in zip(edits[1:], edits):
        assert end <= later[0], "overlapping replacements"
    for start, end, new in edits:
        text = text[:start] + new + text[end:]
    return text


def sarif_fix_text(text: str, sarif: dict, applicability: str) -> str:
    """The file after applying, for every result, the fix `alloc-lint fix`
    would pick: the safe one, or with unsafe fixes the unsafe one if offered."""
    replacements = {}
    for result in sarif["runs"][0]["results"]:
        fixes = {re.search(r"\((safe|unsafe) fix\)$", f["description"]["text"]).group(1): f
                 for f in result.get("fixes", [])}
        fix = fixes.get("unsafe") if applicability == "unsafe" else None
        fix = fix or fixes.get("safe")
        if fix is None:
            continue
        for change in fix["artifactChanges"]:
            for r in change["replacements"]:
                replacements[json.dumps(r, sort_keys=True)] = r  # a group's findings share one fix
    return apply_replacements(text, list(replacements.values()))


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_sarif_format_and_its_fixes_match_fix(tmp_path, newline):
    source = (FINDING + "\n\n" + SWAP_FINDING.replace("import torch\n\n", "")).replace("\n", newline)
    (tmp_path / "merge.py").write_bytes(source.encode())
    proc = alloc_lint("check", "--format", "sarif", "merge.py", cwd=tmp_path, check=1)
    log = json.loads(proc.stdout)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["ALC001"]
    results = run["results"]
    assert len(results) == 3
    for result in results:
        assert result["ruleId"] == "ALC001"
        assert result["level"] in ("warning", "error", "note")
        assert result["message"]["text"]
        [location] = result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == "merge.py"
        region = location["physicalLocation"]["region"]
        call = span(source, region["startLine"], region["startColumn"], region["endLine"], region["endColumn"])
        assert re.fullmatch(r"torch\.empty_like\(\w+\)", call), call
        assert result["fixes"] and all(f["artifactChanges"][0]["replacements"] for f in result["fixes"])
    assert [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results] == [9, 10, 23]

    for applicability, flags in (("safe", []), ("unsafe", ["--unsafe-fixes"])):
        target = tmp_path / f"{applicability}.py"
        target.write_bytes(source.encode())
        alloc_lint("fix", *flags, target.name, cwd=tmp_path, check=0)
        fixed = target.read_bytes().decode()
        assert fixed != source
        assert sarif_fix_text(source, log, applicability) == fixed, applicability


# --- selection and noqa ---------------------------------------------------------------


@pytest.mark.parametrize("flags, code", [
    ([], 1),
    (["--select", "ALC001"], 1),
    (["--select", "alc"], 1),
    (["--ignore", "ALC001"], 0),
    (["--ignore", "ALC"], 0),
    (["--select", "alloc-in-loop-merge"], 1),
    (["--select", "ALC0"], 1),
    (["--select", "ALL"], 1),
    (["--ignore", "alloc-in-loop-merge"], 0),
    (["--select", "ALC001", "--ignore", "ALC0"], 0),
])
def test_select_and_ignore(tmp_path, flags, code):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", *flags, "merge.py", cwd=tmp_path, check=code)
    assert ("ALC001" in proc.stdout) == (code == 1)


def test_ignore_in_pyproject(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / "pyproject.toml", '[tool.alloc-lint]\nignore = ["ALC001"]\n')
    alloc_lint("check", "merge.py", cwd=tmp_path, check=0)


@pytest.mark.parametrize("comment, suppressed", [
    ("# noqa", True),
    ("# noqa: ALC001", True),
    ("# noqa:ALC001,E501", True),
    ("# NOQA: alc001", True),
    ("# noqa: E501", False),
])
def test_noqa_on_the_allocation_line(tmp_path, comment, suppressed):
    lines = FINDING.splitlines(keepends=True)
    lines[8] = lines[8].rstrip("\n") + "  " + comment + "\n"
    write(tmp_path / "merge.py", "".join(lines))
    proc = alloc_lint("check", "merge.py", cwd=tmp_path)
    reported = [int(m) for m in re.findall(r"^merge\.py:(\d+):", proc.stdout, re.M)]
    assert reported == ([10] if suppressed else [9, 10])


def test_noqa_on_another_line_does_not_suppress(tmp_path):
    text = FINDING.replace("        else:\n", "        else:  # noqa: ALC001\n")
    write(tmp_path / "merge.py", text)
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=1)
    assert "merge.py:9:26" in proc.stdout and "merge.py:10:30" in proc.stdout


# A form feed (page break, common in older GNU-style modules) or a Unicode line
# separator in a comment is not a line break for Python: line numbers must not
# shift when `noqa` comments are looked up or when fixes are planned.
ODD_LINE_BREAKS = {"form_feed": ("", "\x0c\n"), "line_separator": ("", "# see \u2028 below\n")}


@pytest.mark.parametrize("kind", sorted(ODD_LINE_BREAKS))
def test_noqa_with_characters_that_str_splitlines_treats_as_breaks(tmp_path, kind):
    _, extra = ODD_LINE_BREAKS[kind]
    lines = FINDING.splitlines(keepends=True)
    lines[8] = lines[8].rstrip("\n") + "  # noqa: ALC001\n"
    write(tmp_path / "merge.py", extra + "".join(lines))
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=1)
    reported = [int(m) for m in re.findall(r"^merge\.py:(\d+):", proc.stdout, re.M)]
    assert reported == [11], proc.stdout  # line 10 carries noqa; line 11 does not


@pytest.mark.parametrize("kind", sorted(ODD_LINE_BREAKS))
def test_fix_with_characters_that_str_splitlines_treats_as_breaks(tmp_path, kind):
    _, extra = ODD_LINE_BREAKS[kind]
    path = write(tmp_path / "merge.py", extra + FINDING)
    proc = alloc_lint("check", "--format", "json", "merge.py", cwd=tmp_path, check=1)
    found = json.loads(proc.stdout)
    assert [(d["line"], d["column"]) for d in found] == [(10, 26), (11, 30)]
    assert all(d["fix"] and d["fix"]["applicability"] == "safe" for d in found), found
    alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    fixed = path.read_text(encoding="utf-8")
    assert fixed.startswith(extra) and "if output_tmp is None:" in fixed


# --- configuration --------------------------------------------------------------------

CUSTOM_ALLOCATOR = '''\
import mylib

def merge_chunks(chunks):
    acc = chunks[0]
    for c in chunks[1:]:
        tmp = mylib.alloc_like(acc)
        merge_attn_states(tmp, acc, c)
        acc = tmp
    return acc
'''

CUSTOM_MERGE = '''\
import torch

def merge_chunks(chunks):
    acc = chunks[0]
    for c in chunks[1:]:
        tmp = torch.empty_like(acc)
        combine(dst=tmp, a=acc, b=c)
        acc = tmp
    return acc
'''


def test_extra_allocators_and_merge_functions_from_pyproject(tmp_path):
    write(tmp_path / "alloc.py", CUSTOM_ALLOCATOR)
    write(tmp_path / "combine.py", CUSTOM_MERGE)
    alloc_lint("check", "alloc.py", "combine.py", cwd=tmp_path, check=0)
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.alloc-lint]\n'
          'extra-allocators = ["mylib.alloc_like"]\nextra-merge-functions = ["combine"]\n')
    proc = alloc_lint("check", "alloc.py", "combine.py", cwd=tmp_path, check=1)
    assert "alloc.py:6:15: ALC001 [*] `mylib.alloc_like` allocates `tmp`" in proc.stdout
    assert "combine.py:6:15: ALC001 [*] `torch.empty_like` allocates `tmp`" in proc.stdout


def test_exclude_skips_a_folder(tmp_path):
    for folder in ("generated", "src"):
        write(tmp_path / folder / "merge.py", FINDING)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert "generated/merge.py" in proc.stdout and "src/merge.py" in proc.stdout
    write(tmp_path / "pyproject.toml", '[tool.alloc-lint]\nexclude = ["generated"]\n')
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert "generated" not in proc.stdout and "src/merge.py" in proc.stdout


def test_config_option_names_a_file(tmp_path):
    write(tmp_path / "alloc.py", CUSTOM_ALLOCATOR)
    write(tmp_path / "conf" / "lint.toml", 'extra-allocators = ["mylib.alloc_like"]\n')
    write(tmp_path / "conf" / "pyproject.toml", '[tool.alloc-lint]\nextra-allocators = ["mylib.alloc_like"]\n')
    alloc_lint("check", "alloc.py", cwd=tmp_path, check=0)
    for config in ("conf/lint.toml", "conf/pyproject.toml"):
        proc = alloc_lint("check", "--config", config, "alloc.py", cwd=tmp_path, check=1)
        assert "alloc.py:6:15: ALC001" in proc.stdout


# --- awkward input --------------------------------------------------------------------


def test_undecodable_bytes_without_coding_cookie(tmp_path):
    (tmp_path / "latin.py").write_bytes(FINDING.replace("import torch", "import torch  # caf\xe9")
                                        .encode("latin-1"))
    proc = alloc_lint("check", "latin.py", cwd=tmp_path, check=2)
    assert "ALC001" not in proc.stdout
    [line] = proc.stderr.splitlines()
    assert line.startswith("latin.py: error: ") and "decode" in line


def test_latin1_with_coding_cookie_is_checked_and_fixed_in_its_encoding(tmp_path):
    text = "# -*- coding: latin-1 -*-\n" + FINDING.replace("import torch", "import torch  # caf\xe9")
    path = tmp_path / "latin.py"
    path.write_bytes(text.encode("latin-1"))
    proc = alloc_lint("check", "latin.py", cwd=tmp_path, check=1)
    assert "latin.py:10:26: ALC001" in proc.stdout
    alloc_lint("fix", "latin.py", cwd=tmp_path, check=0)
    data = path.read_bytes()
    assert b"caf\xe9" in data and "if output_tmp is None:" in data.decode("latin-1")


def test_utf8_bom(tmp_path):
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbf" + FINDING.encode())
    proc = alloc_lint("check", "--format", "json", "bom.py", cwd=tmp_path, check=1)
    assert [(d["line"], d["column"], d["end_column"]) for d in json.loads(proc.stdout)] == [
        (9, 26, 50), (10, 30, 58)]
    alloc_lint("fix", "bom.py", cwd=tmp_path, check=0)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and not data[3:].startswith(b"\xef\xbb\xbf")
    ast.parse(data)


def test_crlf_file_is_checked_and_fixed_with_crlf_everywhere(tmp_path):
    path = tmp_path / "crlf.py"
    path.write_bytes(FINDING.replace("\n", "\r\n").encode())
    proc = alloc_lint("check", "crlf.py", cwd=tmp_path, check=1)
    assert "crlf.py:9:26: ALC001" in proc.stdout
    alloc_lint("fix", "crlf.py", cwd=tmp_path, check=0)
    data = path.read_bytes()
    assert b"if output_tmp is None:" in data
    assert data.count(b"\n") == data.count(b"\r\n") > FINDING.count("\n")
    assert b"\r\r" not in data
    alloc_lint("check", "crlf.py", cwd=tmp_path, check=0)


def test_tab_indented_file(tmp_path):
    text = FINDING.replace("    ", "\t")
    path = write(tmp_path / "tabs.py", text)
    proc = alloc_lint("check", "--format", "json", "tabs.py", cwd=tmp_path, check=1)
    found = json.loads(proc.stdout)
    assert [(d["line"], d["column"]) for d in found] == [(9, 17), (10, 21)]
    assert span(text, 9, found[0]["column"], 9, found[0]["end_column"]) == ALLOC_LINES[9]
    alloc_lint("fix", "tabs.py", cwd=tmp_path, check=0)
    fixed = path.read_text()
    ast.parse(fixed)
    assert "\t\t\tif output_tmp is None:\n\t\t\t\toutput_tmp = torch.empty_like(output)\n" in fixed
    assert not any(line.startswith(" ") for line in fixed.splitlines())


def test_empty_file(tmp_path):
    write(tmp_path / "empty.py", "")
    proc = alloc_lint("check", "empty.py", cwd=tmp_path, check=0)
    assert proc.stdout == "All checks passed!\n" and proc.stderr == ""


def test_null_bytes(tmp_path):
    (tmp_path / "nul.py").write_bytes(FINDING.encode() + b"\x00\n")
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", "nul.py", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert line.startswith("nul.py: error: ")
    assert "merge.py:9:26" in proc.stdout


def test_folder_without_python_files_warns(tmp_path):
    write(tmp_path / "docs" / "README.md", "# nothing here\n")
    proc = alloc_lint("check", "docs", cwd=tmp_path, check=0)
    [line] = proc.stderr.splitlines()
    assert line.startswith("docs: warning: ") and "no Python files" in line


def test_dangling_symlink(tmp_path):
    """Unreadable even as root: a link to nothing, named or found in a folder."""
    write(tmp_path / "src" / "merge.py", FINDING)
    (tmp_path / "src" / "gone.py").symlink_to(tmp_path / "does-not-exist.py")
    proc = alloc_lint("check", "src", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert line.startswith("src/gone.py: error: ")
    assert "src/merge.py:9:26" in proc.stdout
    proc = alloc_lint("check", "src/gone.py", cwd=tmp_path, check=2)
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    path.chmod(0)
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert line.startswith("merge.py: error: ")


def test_symlink_loops_terminate(tmp_path):
    write(tmp_path / "tree" / "pkg" / "merge.py", FINDING)
    (tmp_path / "tree" / "pkg" / "up").symlink_to(tmp_path / "tree", target_is_directory=True)
    (tmp_path / "tree" / "self.py").symlink_to(tmp_path / "tree" / "self.py")  # a file link to itself
    proc = alloc_lint("check", "tree", cwd=tmp_path, check=2)  # 2: self.py cannot be read
    assert proc.stdout.count("tree/pkg/merge.py:") == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith("tree/self.py: error: ")


def test_fifo_in_a_folder_does_not_hang(tmp_path):
    """A named pipe called `*.py` in a tree (left by a tool, or a socket-like
    special file) must be reported or skipped, not read: reading it blocks
    until something writes to it."""
    write(tmp_path / "src" / "merge.py", FINDING)
    os.mkfifo(tmp_path / "src" / "pipe.py")
    try:
        proc = subprocess.run([sys.executable, "-m", "alloc_lint.cli", "check", "src"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("alloc-lint blocked reading a FIFO")
    assert "src/merge.py:9:26" in proc.stdout
    assert proc.returncode in (1, 2)


def test_overlapping_paths_report_each_finding_once(tmp_path):
    """`check src src/merge.py ./src/merge.py` checks merge.py once (as Ruff does)."""
    write(tmp_path / "src" / "merge.py", FINDING)
    proc = alloc_lint("check", "src", "src/merge.py", "./src/merge.py", cwd=tmp_path, check=1)
    assert "Found 2 findings." in proc.stdout, proc.stdout
    proc = alloc_lint("fix", "--diff", "src", "src/merge.py", cwd=tmp_path, check=1)
    assert proc.stdout.count("+++ ") == 1
    assert proc.stderr.splitlines()[-1].startswith("Would fix 2 findings in 1 file.")


def test_many_files_in_worker_processes(tmp_path):
    """Enough files for worker processes: same output as one process, and a
    bad file among them reported once."""
    for i in range(80):
        write(tmp_path / "src" / f"m{i:02d}.py", FINDING if i % 2 else CLEAN)
    (tmp_path / "src" / "m41.py").write_bytes(FINDING.encode() + b"\x00\n")
    one = alloc_lint("check", "--no-cache", "-j", "1", "src", cwd=tmp_path, check=2)
    two = alloc_lint("check", "--no-cache", "-j", "2", "src", cwd=tmp_path, check=2)
    assert (one.stdout, one.stderr) == (two.stdout, two.stderr)
    assert "Found 78 findings." in two.stdout
    assert two.stderr.splitlines() == [two.stderr.splitlines()[0]]
    assert two.stderr.startswith("src/m41.py: error: ")


def test_results_cache_check_fix_check(tmp_path):
    """A warm cache gives the same output as a cold one, and never hides a
    change: check, fix, check again."""
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / "swap.py", SWAP_FINDING)
    cold = alloc_lint("check", "--format", "json", ".", cwd=tmp_path, check=1)
    assert list(tmp_path.glob(".alloc_lint_cache/*"))  # the run left a cache behind
    warm = alloc_lint("check", "--format", "json", ".", cwd=tmp_path, check=1)
    assert warm.stdout == cold.stdout
    text = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert "Found 3 findings." in text.stdout
    alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert not re.search(r"^merge\.py:", proc.stdout, re.M) and "Found 1 finding." in proc.stdout
    write(tmp_path / "swap.py", CLEAN)
    alloc_lint("check", ".", cwd=tmp_path, check=0)


# --- fix ------------------------------------------------------------------------------


def test_fix_rewrites_in_place(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    fixed = path.read_text()
    assert fixed != FINDING
    ast.parse(fixed)
    assert "    output_tmp = None\n    for attn_output" in fixed
    assert "            if output_tmp is None:\n                output_tmp = torch.empty_like(output)\n" in fixed
    assert "output_tmp_alt" in fixed  # the safe form here is ping-pong
    # the merge call and the lines around it are untouched
    assert "merge_attn_states(output=output_tmp, output_lse=output_lse_tmp,\n" in fixed
    assert fixed.endswith("    return output, output_lse\n")
    *held, summary = proc.stderr.splitlines()
    assert summary == "Fixed 2 findings in 1 file."
    # the forms said in plain words, the first time they appear
    assert held == ["2 findings took the ping-pong form (two buffers per accumulator, used in turn; the first "
                    "value is only read); `--unsafe-fixes` would apply the swap form (one buffer per accumulator, "
                    "exchanged with the accumulator after each merge, as upstream vLLM does) instead "
                    "(`alloc-lint explain ALC001` says when that is the same program)."]
    assert not list(tmp_path.glob(".alloc-lint-*"))  # no temporary file left behind
    alloc_lint("check", "merge.py", cwd=tmp_path, check=0)


def test_fix_unsafe_gives_the_swap(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("fix", "--unsafe-fixes", "merge.py", cwd=tmp_path, check=0)
    fixed = path.read_text()
    assert "_alt" not in fixed
    assert "            output, output_tmp = output_tmp, output\n" in fixed
    assert "            output_lse, output_lse_tmp = output_lse_tmp, output_lse\n" in fixed
    assert fixed.count("torch.empty_like(") == 2
    assert proc.stderr.splitlines()[-1] == "Fixed 2 findings in 1 file."


def test_fix_swap_is_safe_for_an_owned_accumulator(tmp_path):
    path = write(tmp_path / "swap.py", SWAP_FINDING)
    alloc_lint("fix", "swap.py", cwd=tmp_path, check=0)
    fixed = path.read_text()
    assert "        acc, acc_tmp = acc_tmp, acc\n" in fixed and "_alt" not in fixed


def test_fix_diff_writes_nothing(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("fix", "--diff", "merge.py", cwd=tmp_path, check=1)
    assert path.read_text() == FINDING
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["--- a/merge.py", "+++ b/merge.py"]
    assert lines[2].startswith("@@ ")
    assert "+            if output_tmp is None:" in lines
    assert "-            output_tmp = torch.empty_like(output)" in lines
    assert proc.stderr.splitlines()[-1].startswith("Would fix 2 findings in 1 file.")
    # the diff is exactly what `fix` then does
    alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    if shutil.which("patch") is None:
        return
    patched = subprocess.run(["patch", "-p1", "--dry-run", "-R", "-s"], input=proc.stdout, cwd=tmp_path,
                             capture_output=True, text=True)
    assert patched.returncode == 0, patched.stdout + patched.stderr


def test_fix_diff_without_changes_exits_0(tmp_path):
    write(tmp_path / "clean.py", CLEAN)
    proc = alloc_lint("fix", "--diff", "clean.py", cwd=tmp_path, check=0)
    assert proc.stdout == ""


def test_fix_keeps_permissions(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    path.chmod(0o640)
    alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    assert path.read_text() != FINDING
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_fixing_twice_changes_nothing(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    once = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    proc = alloc_lint("fix", "merge.py", cwd=tmp_path, check=0)
    assert path.read_bytes() == once and path.stat().st_mtime_ns == mtime
    assert proc.stderr.splitlines()[-1] == "Fixed 0 findings in 0 files."


def test_fix_reports_what_it_could_not_fix(tmp_path):
    path = write(tmp_path / "nofix.py", NO_FIX_FINDING)
    proc = alloc_lint("fix", "nofix.py", cwd=tmp_path, check=1)
    assert path.read_text() == NO_FIX_FINDING
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("nofix.py:6:30: ALC001 ")
    assert lines[-1] == "Fixed 0 findings in 0 files; 1 remaining without a fix."


def test_fix_goes_on_past_bad_files(tmp_path):
    write(tmp_path / "a_broken.py", SYNTAX_ERROR)
    path = write(tmp_path / "b_merge.py", FINDING)
    proc = alloc_lint("fix", "a_broken.py", "missing.py", "b_merge.py", cwd=tmp_path, check=2)
    assert "if output_tmp is None:" in path.read_text()
    errors = error_lines(proc.stderr)
    assert sorted(e.split(":")[0] for e in errors) == ["a_broken.py", "missing.py"]
    assert proc.stderr.splitlines()[-1].startswith("Fixed 2 findings in 1 file.")


# --- rules, explain, docs -------------------------------------------------------------


def test_rules_lists_alc001(tmp_path):
    proc = alloc_lint("rules", cwd=tmp_path, check=0)
    assert proc.stdout.startswith("ALC001  alloc-in-loop-merge  ")
    proc = alloc_lint("rules", "--format", "json", cwd=tmp_path, check=0)
    assert [r["code"] for r in json.loads(proc.stdout)] == ["ALC001"]


def test_explain_prints_the_rule_page(tmp_path):
    proc = alloc_lint("explain", "ALC001", cwd=tmp_path, check=0)
    page = (ROOT / "rules" / "ALC001.md").read_text(encoding="utf-8")
    first, rest = page.split("\n", 1)
    assert first.startswith("<!--") and first.endswith("-->")
    assert proc.stdout.strip("\n") == rest.strip("\n")
    assert proc.stdout.startswith("# ALC001 alloc-in-loop-merge\n")
    for heading in ("## What it does", "## Fix safety"):
        assert heading in proc.stdout


def test_explain_unknown_rule_exits_2(tmp_path):
    proc = alloc_lint("explain", "NOPE", cwd=tmp_path, check=2)
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "NOPE" in line and "ALC001" in line


def test_rule_pages_are_in_sync():
    proc = subprocess.run([sys.executable, "-m", "alloc_lint.docs", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

"""Issue 9, "conventions users expect" (from Ruff and flake8), through the real
`alloc-lint` command: standard input, statistics, show-fixes, output files,
quiet, exit-code flags, colour, per-file-ignores, file-level suppression,
--add-noqa, unknown flags, `help`, `rules`, rule pages, and the README."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from test_cli import CLEAN, FINDING, NO_FIX_FINDING, ROOT, SWAP_FINDING, alloc_lint, write


def run(*args, cwd, stdin: str | None = None, env: dict | None = None):
    proc = subprocess.run([sys.executable, "-m", "alloc_lint.cli", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# --- standard input ---------------------------------------------------------------------


def test_check_reads_standard_input(tmp_path):
    proc = run("check", "-", cwd=tmp_path, stdin=FINDING)
    assert proc.returncode == 1
    assert proc.stdout.startswith("-:9:26: ALC001 [*] ")
    proc = run("check", "-", "--stdin-filename", "pkg/merge.py", "--format", "json", cwd=tmp_path, stdin=FINDING)
    found = json.loads(proc.stdout)
    assert [(d["filename"], d["line"]) for d in found] == [("pkg/merge.py", 9), ("pkg/merge.py", 10)]
    assert found[0]["fix"]["edits"]  # edits computed from the text read
    proc = run("check", "-", cwd=tmp_path, stdin=FINDING + "\ndef broken(:\n")
    assert proc.returncode == 2 and proc.stderr.startswith("-:18:12: error: syntax error")


def test_stdin_filename_picks_the_configuration(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.alloc-lint]\nper-file-ignores = {"tests/*" = ["ALC001"]}\n'
                                       'extend-exclude = ["generated"]\n')
    assert run("check", "--stdin-filename", "tests/t.py", cwd=tmp_path, stdin=FINDING).returncode == 0
    assert run("check", "--stdin-filename", "src/t.py", cwd=tmp_path, stdin=FINDING).returncode == 1
    proc = run("check", "--force-exclude", "--stdin-filename", "generated/t.py", cwd=tmp_path, stdin=FINDING)
    assert proc.returncode == 0 and "ALC001" not in proc.stdout


def test_fix_reads_standard_input_and_writes_the_result(tmp_path):
    proc = run("fix", "-", cwd=tmp_path, stdin=FINDING)
    assert proc.returncode == 0, proc.stderr
    assert "if output_tmp is None:" in proc.stdout
    assert run("check", "-", cwd=tmp_path, stdin=proc.stdout).returncode == 0
    proc = run("fix", "-", "--diff", cwd=tmp_path, stdin=FINDING)
    assert proc.returncode == 1 and proc.stdout.startswith("--- a/-\n+++ b/-\n")
    proc = run("fix", "-", cwd=tmp_path, stdin=CLEAN)  # unchanged text passes through
    assert proc.returncode == 0 and proc.stdout == CLEAN
    proc = run("fix", "-", cwd=tmp_path, stdin=NO_FIX_FINDING)
    assert proc.returncode == 1 and proc.stdout == NO_FIX_FINDING and "-:6:30: ALC001" in proc.stderr


# --- report options ---------------------------------------------------------------------


def test_statistics(tmp_path):
    for name, text in (("a.py", FINDING), ("b.py", SWAP_FINDING), ("c.py", NO_FIX_FINDING)):
        write(tmp_path / name, text)
    proc = alloc_lint("check", "--statistics", ".", cwd=tmp_path, check=1)
    assert proc.stdout == "    4\tALC001\t[-] alloc-in-loop-merge\n"  # [-]: some fixable
    proc = alloc_lint("check", "--statistics", "--format", "json", ".", cwd=tmp_path, check=1)
    assert json.loads(proc.stdout) == [{"code": "ALC001", "name": "alloc-in-loop-merge", "count": 4, "fixable": 3}]


def test_show_fixes(tmp_path):
    write(tmp_path / "a.py", FINDING)
    write(tmp_path / "c.py", NO_FIX_FINDING)
    proc = alloc_lint("check", "--show-fixes", ".", cwd=tmp_path, check=1)
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("    fix (unsafe, swap): ") and lines[1].endswith("(not applied without --unsafe-fixes)")
    assert lines[2].startswith("    fix (safe, pingpong): ")
    assert any(line.startswith("    no fix: ") for line in lines)
    proc = alloc_lint("fix", "--show-fixes", ".", cwd=tmp_path, check=1)
    assert "Fixed a.py: 2 × ALC001 (alloc-in-loop-merge)" in proc.stderr.splitlines()


def test_output_file(tmp_path):
    write(tmp_path / "a.py", FINDING)
    proc = alloc_lint("check", "--format", "json", "--output-file", "report.json", ".", cwd=tmp_path, check=1)
    assert proc.stdout == ""
    assert len(json.loads((tmp_path / "report.json").read_text())) == 2
    proc = alloc_lint("check", "--output-file", "no/such/dir/r.txt", ".", cwd=tmp_path, check=2)
    assert "no/such/dir/r.txt" in proc.stderr


def test_quiet(tmp_path):
    write(tmp_path / "a.py", FINDING)
    proc = alloc_lint("check", "-q", ".", cwd=tmp_path, check=1)
    assert len(proc.stdout.splitlines()) == 2 and "Found" not in proc.stdout
    proc = alloc_lint("fix", "--quiet", "--diff", ".", cwd=tmp_path, check=1)
    assert proc.stderr == "" and proc.stdout.startswith("--- a/a.py")


def test_fix_exit_code_flags(tmp_path):
    write(tmp_path / "a.py", FINDING)
    write(tmp_path / "c.py", NO_FIX_FINDING)
    alloc_lint("fix", "--diff", "--exit-zero", ".", cwd=tmp_path, check=0)
    alloc_lint("fix", "--exit-zero", "a.py", cwd=tmp_path, check=0)
    write(tmp_path / "a.py", FINDING)
    alloc_lint("fix", "--exit-non-zero-on-fix", "a.py", cwd=tmp_path, check=1)  # fixed, nothing remains
    alloc_lint("fix", "--exit-non-zero-on-fix", "a.py", cwd=tmp_path, check=0)  # nothing to fix
    alloc_lint("fix", "c.py", cwd=tmp_path, check=1)
    alloc_lint("fix", "--exit-zero", "c.py", cwd=tmp_path, check=0)


@pytest.mark.parametrize("env, coloured", [
    ({}, False),  # a pipe
    ({"FORCE_COLOR": "1"}, True),
    ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
])
def test_colour(tmp_path, env, coloured):
    write(tmp_path / "a.py", FINDING)
    clean_env = {k: "" for k in ("FORCE_COLOR", "NO_COLOR")}
    proc = run("check", ".", cwd=tmp_path, env={**clean_env, **env})
    assert ("\033[" in proc.stdout) == coloured
    assert re.sub(r"\033\[[0-9;]*m", "", proc.stdout).startswith("a.py:9:26: ALC001 [*] ")


# --- suppression --------------------------------------------------------------------------


def test_per_file_ignores(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.alloc-lint.per-file-ignores]\n"tests/*" = ["ALC001"]\n'
                                       '"legacy.py" = ["alloc-in-loop-merge"]\n')
    for name in ("tests/test_a.py", "pkg/legacy.py", "pkg/merge.py"):
        write(tmp_path / name, FINDING)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert set(re.findall(r"^(\S+?):\d+:\d+: ALC001", proc.stdout, re.M)) == {"pkg/merge.py"}
    write(tmp_path / "pyproject.toml", '[tool.alloc-lint.per-file-ignores]\n"tests/*" = ["ALC9"]\n')
    proc = alloc_lint("check", ".", cwd=tmp_path, check=2)
    assert "Unknown rule selector `ALC9`" in proc.stderr


@pytest.mark.parametrize("comment, suppressed", [
    ("# alloc-lint: noqa", True),
    ("# alloc-lint: noqa: ALC001", True),
    ("  # Alloc-Lint: NOQA: alloc-in-loop-merge", True),
    ("# alloc-lint: noqa: ALC002", False),
    ("x = 1  # alloc-lint: noqa", False),  # not on a line of its own
])
def test_file_level_suppression(tmp_path, comment, suppressed):
    write(tmp_path / "a.py", comment + "\n" + FINDING)
    alloc_lint("check", "a.py", cwd=tmp_path, check=0 if suppressed else 1)


def test_add_noqa(tmp_path):
    text = FINDING.replace("torch.empty_like(output_lse)", "torch.empty_like(output_lse)  # noqa: E501")
    path = write(tmp_path / "a.py", text)
    write(tmp_path / "c.py", NO_FIX_FINDING)
    proc = alloc_lint("check", "--add-noqa", ".", cwd=tmp_path, check=0)
    assert proc.stderr.splitlines()[-1] == "Added 3 noqa directives."
    lines = path.read_text().splitlines()
    assert lines[8].endswith("torch.empty_like(output)  # noqa: ALC001")
    assert lines[9].endswith("torch.empty_like(output_lse)  # noqa: E501, ALC001")
    assert (tmp_path / "c.py").read_text().splitlines()[5].endswith("torch.empty_like(  # noqa: ALC001")
    proc = alloc_lint("check", ".", cwd=tmp_path, check=0)
    proc = alloc_lint("check", "--add-noqa", ".", cwd=tmp_path, check=0)
    assert proc.stderr.splitlines()[-1] == "Added 0 noqa directives."
    # standard input: the result on standard output
    proc = run("check", "--add-noqa", "-", cwd=tmp_path, stdin=FINDING)
    assert proc.returncode == 0 and proc.stdout.count("  # noqa: ALC001\n") == 2
    assert run("check", "--add-noqa", "-", cwd=tmp_path, stdin=CLEAN).stdout == CLEAN


def test_add_noqa_leaves_lines_it_cannot_annotate(tmp_path):
    text = FINDING.replace("output_tmp = torch.empty_like(output)\n",
                           "output_tmp = torch.empty_like(output); note = \"\"\"x\n  y\"\"\"\n")
    path = write(tmp_path / "a.py", text)
    proc = alloc_lint("check", "--add-noqa", "a.py", cwd=tmp_path, check=0)
    assert "a.py:9: warning: no noqa added" in proc.stderr
    after = path.read_text()
    assert after.count("# noqa: ALC001") == 1 and '"""x\n  y"""' in after
    compile(after, "a.py", "exec")


# --- the command line itself ------------------------------------------------------------


@pytest.mark.parametrize("command, flag, hint", [
    ("check", "--selec", "--select"),
    ("check", "--statistic", "--statistics"),
    ("fix", "--unsafe-fix", "--unsafe-fixes"),
    ("check", "--diff", None),  # a fix flag: check's usage, no wild guess
])
def test_unknown_flag_shows_the_subcommand_usage_and_the_closest_flag(tmp_path, command, flag, hint):
    proc = alloc_lint(command, flag, ".", cwd=tmp_path, check=2)
    assert proc.stderr.startswith(f"usage: alloc-lint {command} ")
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"alloc-lint {command}: error: unrecognized argument `{flag}`")
    if hint:
        assert last.endswith(f"did you mean `{hint}`?")


def every_flag() -> dict[str, list[str]]:
    sys.path.insert(0, str(ROOT))
    from alloc_lint.cli import _parser

    _, subs = _parser()
    return {name: sorted({o for a in sub._actions for o in a.option_strings if o not in ("-h", "--help")})
            for name, sub in subs.items()}


def test_help_lists_every_command_and_flag(tmp_path):
    proc = alloc_lint("help", cwd=tmp_path, check=0)
    for command, flags in every_flag().items():
        assert f"alloc-lint {command}" in proc.stdout
        for flag in flags:
            assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", proc.stdout), flag
    proc = alloc_lint("help", "fix", cwd=tmp_path, check=0)
    assert proc.stdout.startswith("usage: alloc-lint fix")


def test_readme_documents_every_flag_and_compares_with_ruff_and_flake8():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    reference = readme.split("## Command-line reference", 1)[1].split("\n## ", 1)[0]
    for command, flags in every_flag().items():
        assert f"alloc-lint {command}" in reference, command
        for flag in flags:
            assert f"`{flag}" in reference, (command, flag)
    table = readme.split("## Compared with Ruff and flake8", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in table.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["", "alloc-lint", "Ruff", "flake8"]
    for feature in ("stdin", "--statistics", "--add-noqa", "per-file-ignores", "--force-exclude", ".gitignore",
                    "--exit-non-zero-on-fix", "NO_COLOR", "file-level"):
        assert feature in table, feature


def test_rules_show_fixability(tmp_path):
    proc = alloc_lint("rules", cwd=tmp_path, check=0)
    assert proc.stdout.startswith("ALC001  alloc-in-loop-merge  (fix: sometimes)  ")
    proc = alloc_lint("rules", "--format", "json", cwd=tmp_path, check=0)
    [rule] = [r for r in json.loads(proc.stdout) if r["code"] == "ALC001"]
    assert rule["fix"] == "sometimes" and rule["options"] == ["extra-allocators", "extra-merge-functions"]


def test_every_rule_page_has_an_options_section(tmp_path):
    from alloc_lint.config import KEYS
    from alloc_lint.rules import ALL_RULES

    for rule in ALL_RULES:
        page = alloc_lint("explain", rule.name, cwd=tmp_path, check=0).stdout
        assert "\n## Options\n" in page, rule.code
        options = page.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
        for key in rule.options:
            assert key in KEYS and f"`{key}`" in options, (rule.code, key)

"""The flake8 plugin, through the real `flake8` executable: it must report
what `alloc-lint check` reports, at the same line and column."""
from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flake8")

from test_cli import CLEAN, FINDING, NO_FIX_FINDING, SWAP_FINDING  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alc001"
FORMAT = "%(path)s:%(row)d:%(col)d: %(code)s %(text)s"


def flake8(*args, cwd):
    return subprocess.run([sys.executable, "-m", "flake8", "--select", "ALC", "--format", FORMAT,
                           "--no-show-source", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def flake8_findings(stdout: str) -> set[tuple[str, int, int, str, str]]:
    found = set()
    for line in stdout.splitlines():
        match = re.fullmatch(r"(.+?):(\d+):(\d+): (ALC\d+) (.*)", line)
        assert match, line
        path, row, col, code, text = match.groups()
        found.add((path, int(row), int(col), code, text))
    return found


def alloc_lint_findings(*paths, cwd) -> set[tuple[str, int, int, str, str]]:
    proc = subprocess.run([sys.executable, "-m", "alloc_lint.cli", "check", "--format", "json",
                           *map(str, paths)], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return {(d["filename"], d["line"], d["column"], d["code"], d["message"]) for d in json.loads(proc.stdout)}


def test_entry_point_is_installed():
    [entry] = [e for e in importlib.metadata.entry_points(group="flake8.extension") if e.name == "ALC"]
    assert entry.value == "alloc_lint.flake8_plugin:AllocLintFlake8"
    assert entry.load().__name__ == "AllocLintFlake8"


def test_flake8_lists_the_plugin(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flake8", "--version"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert "alloc-lint" in proc.stdout


def test_same_findings_as_alloc_lint_check(tmp_path):
    # The detection fixtures, plus files whose columns are easy to get wrong:
    # non-ASCII text before the call, a BOM, CRLF line endings, tabs.
    for path in FIXTURES.glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "merge.py").write_text(FINDING)
    (tmp_path / "swap.py").write_text(SWAP_FINDING)
    (tmp_path / "nofix.py").write_text(NO_FIX_FINDING, encoding="utf-8")
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbf" + FINDING.encode())
    (tmp_path / "crlf.py").write_bytes(FINDING.replace("\n", "\r\n").encode())
    (tmp_path / "tabs.py").write_text(FINDING.replace("    ", "\t"))
    (tmp_path / "clean.py").write_text(CLEAN)
    names = sorted(p.name for p in tmp_path.glob("*.py"))

    expected = alloc_lint_findings(*names, cwd=tmp_path)
    proc = flake8(*names, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    got = flake8_findings(proc.stdout)
    assert got == expected, {"only flake8": got - expected, "only alloc-lint": expected - got}
    files = {f for f, *_ in got}
    assert {"merge.py", "swap.py", "nofix.py", "bom.py", "crlf.py", "tabs.py"} <= files
    assert len(got) > 30  # the fixtures' positives are all there
    assert ("nofix.py", 6, 30) in {(f, line, col) for f, line, col, *_ in got}  # characters, not bytes


@pytest.mark.parametrize("comment, suppressed", [
    ("# noqa: ALC001", True),
    ("# noqa", True),
    ("# noqa: E501", False),
])
def test_noqa(tmp_path, comment, suppressed):
    lines = FINDING.splitlines(keepends=True)
    lines[8] = lines[8].rstrip("\n") + "  " + comment + "\n"
    (tmp_path / "merge.py").write_text("".join(lines))
    proc = flake8("merge.py", cwd=tmp_path)
    rows = sorted(line for _, line, *_ in flake8_findings(proc.stdout))
    assert rows == ([10] if suppressed else [9, 10])


def test_clean_file_exits_0(tmp_path):
    (tmp_path / "clean.py").write_text(CLEAN)
    proc = flake8("clean.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_pyproject_configuration_applies(tmp_path):
    source = FINDING.replace("torch.empty_like(", "mylib.alloc_like(").replace("import torch", "import mylib")
    (tmp_path / "merge.py").write_text(source)
    assert flake8("merge.py", cwd=tmp_path).stdout == ""
    (tmp_path / "pyproject.toml").write_text('[tool.alloc-lint]\nextra-allocators = ["mylib.alloc_like"]\n')
    proc = flake8("merge.py", cwd=tmp_path)
    assert flake8_findings(proc.stdout) == alloc_lint_findings("merge.py", cwd=tmp_path)
    assert proc.returncode == 1


def test_configuration_error_reaches_the_flake8_user(tmp_path):
    """A typo key must not silently drop the configuration (and its findings)."""
    source = FINDING.replace("torch.empty_like(", "mylib.alloc_like(").replace("import torch", "import mylib")
    (tmp_path / "merge.py").write_text(source)
    (tmp_path / "pyproject.toml").write_text('[tool.alloc-lint]\nextra-allocators = ["mylib.alloc_like"]\n'
                                             'extra-merge-functionz = ["x"]\n')
    proc = flake8("merge.py", cwd=tmp_path)
    assert proc.returncode != 0
    assert "extra-merge-functionz" in proc.stdout + proc.stderr
    assert "did you mean `extra-merge-functions`?" in proc.stdout + proc.stderr
    # a broken configuration below the paths flake8 was given: reported per file, as ALC000
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text('[tool.alloc-lint]\nselect = ["ALC999"]\n')
    (tmp_path / "sub" / "merge.py").write_text(FINDING)
    proc = flake8(".", cwd=tmp_path)
    [line] = [line for line in proc.stdout.splitlines() if "ALC000" in line]
    assert line.startswith("./sub/merge.py:1:1: ALC000 alloc-lint configuration error: ")
    assert "Unknown rule selector `ALC999`" in line and proc.returncode == 1


def test_unknown_alc_selector_on_flake8_command_line(tmp_path):
    (tmp_path / "merge.py").write_text(FINDING)
    proc = subprocess.run([sys.executable, "-m", "flake8", "--select", "ALC999", "merge.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Unknown rule selector `ALC999` in --select; did you mean `ALC001`?" in proc.stdout + proc.stderr


def test_configuration_per_file_and_suppressions_as_alloc_lint_check(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pyproject.toml").write_text('[tool.alloc-lint]\nignore = ["alloc-in-loop-merge"]\n')
    (tmp_path / "proj" / "merge.py").write_text(FINDING)
    (tmp_path / "tests").mkdir()
    (tmp_path / "pyproject.toml").write_text('[tool.alloc-lint.per-file-ignores]\n"tests/*" = ["ALC001"]\n')
    (tmp_path / "tests" / "merge.py").write_text(FINDING)
    (tmp_path / "suppressed.py").write_text("# alloc-lint: noqa: ALC001\n" + FINDING)
    (tmp_path / "merge.py").write_text(FINDING)
    names = ["proj/merge.py", "tests/merge.py", "suppressed.py", "merge.py"]
    got = flake8_findings(flake8(*names, cwd=tmp_path).stdout)
    assert got == alloc_lint_findings(*names, cwd=tmp_path)
    assert {f for f, *_ in got} == {"merge.py"}

"""The pre-commit hooks in `.pre-commit-hooks.yaml`, through `pre-commit
try-repo` on this repository, run in a throwaway git repository.

try-repo installs this repository into a fresh hook environment on every call
(a pip install, which needs PyPI for libcst; it ignores PRE_COMMIT_HOME and
its cache), about 15 s each, so the test makes two calls: all hooks at once,
then the checking hook again. With uncommitted changes to tracked files,
try-repo installs the working tree as it is (its "shadow repo").
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pre_commit")

from test_cli import FINDING  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "alloc-lint tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
                "GIT_COMMITTER_NAME": "alloc-lint tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid"}


def clean_env(**extra) -> dict:
    # No GIT_* from a surrounding git hook (GIT_INDEX_FILE and friends would
    # point git at the wrong repository), no PRE_COMMIT* from a surrounding run.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env.update(GIT_IDENTITY, **extra)
    return env


def git(*args, cwd, check=True):
    return subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, capture_output=True, text=True, env=clean_env(), check=check)


def _hooks_file_tracked() -> bool:
    # try-repo clones the repository: it sees committed files, and uncommitted
    # changes to tracked (or staged) ones, never untracked files.
    if shutil.which("git") is None:
        return False
    return git("ls-files", "--error-unmatch", ".pre-commit-hooks.yaml", cwd=ROOT, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not _hooks_file_tracked(),
    reason="needs git, and .pre-commit-hooks.yaml committed (or at least staged) at the repository root: "
           "pre-commit try-repo installs hooks from git, never from untracked files")


def try_repo(*args, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), *args,
                           "--all-files", "--color", "never"],
                          cwd=cwd, capture_output=True, text=True, timeout=540,
                          env=clean_env(PRE_COMMIT_HOME=str(home)))
    output = proc.stdout + proc.stderr
    assert "An unexpected error has occurred" not in output, output
    return proc


def hook_sections(stdout: str) -> dict[str, str]:
    """pre-commit's output per failed hook, keyed by hook id: its status line
    (`name.....Failed`) and the lines under it."""
    blocks = []
    for line in stdout.splitlines():
        if re.fullmatch(r"\S.*?\.{3,}.*(Passed|Failed|Skipped)", line):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    sections = {}
    for block in blocks:
        text = "\n".join(block)
        hook_id = re.search(r"^- hook id: (\S+)$", text, re.M)
        sections[hook_id.group(1) if hook_id else block[0]] = text
    return sections


def test_hooks_check_then_fix_then_pass(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "merge.py").write_text(FINDING)
    (project / "notes.md").write_text("not Python: the hooks only see *.py\n")
    # pre-commit names every file: the hooks must still honour excludes (--force-exclude)
    (project / "pyproject.toml").write_text('[tool.alloc-lint]\nextend-exclude = ["generated"]\n')
    (project / "generated").mkdir()
    (project / "generated" / "merge.py").write_text(FINDING)
    git("init", "-q", cwd=project)
    git("add", ".", cwd=project)
    git("commit", "-q", "-m", "init", cwd=project)
    home = tmp_path / "pre-commit-home"

    # Both hooks, in id order: `alloc-lint` reports, `alloc-lint-fix` rewrites.
    both = try_repo(cwd=project, home=home)
    assert both.returncode == 1, both.stdout + both.stderr
    sections = hook_sections(both.stdout)
    check, fix = sections.get("alloc-lint", ""), sections.get("alloc-lint-fix", "")
    assert "Failed" in check.splitlines()[0] and "- exit code: 1" in check, both.stdout
    assert "merge.py:9:26: ALC001" in check and "merge.py:10:30: ALC001" in check
    assert "generated" not in check and "generated" not in fix
    assert check.count("Found 2 findings.") == 1  # require_serial: one process, one report
    assert "Failed" in fix.splitlines()[0] and "- files were modified by this hook" in fix, both.stdout
    assert "Fixed 2 findings in 1 file." in fix
    fixed = (project / "merge.py").read_text()
    assert fixed != FINDING
    assert "    output_tmp = None\n" in fixed
    assert "            if output_tmp is None:\n                output_tmp = torch.empty_like(output)\n" in fixed
    assert git("status", "--porcelain", cwd=project).stdout.split() == ["M", "merge.py"]
    assert (project / "generated" / "merge.py").read_text() == FINDING

    # After the fix, the checking hook passes.
    again = try_repo("alloc-lint", cwd=project, home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"^alloc-lint\.+Passed$", again.stdout, re.M), again.stdout
    assert (project / "merge.py").read_text() == fixed


def test_readme_local_hook_works_as_copied(tmp_path):
    """The first pre-commit snippet of the README, copied verbatim, with
    alloc-lint installed where pre-commit runs (here: this interpreter's)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## pre-commit", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "repo: local" in snippet
    project = tmp_path / "project"
    project.mkdir()
    (project / ".pre-commit-config.yaml").write_text(snippet)
    (project / "merge.py").write_text(FINDING)
    (project / "pyproject.toml").write_text('[tool.alloc-lint]\nextend-exclude = ["generated"]\n')
    (project / "generated").mkdir()
    (project / "generated" / "merge.py").write_text(FINDING)
    git("init", "-q", cwd=project)
    git("add", ".", cwd=project)
    env = clean_env(PRE_COMMIT_HOME=str(tmp_path / "home"))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files", "--color", "never"],
                          cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "merge.py:9:26: ALC001" in proc.stdout and "generated" not in proc.stdout
    (project / "merge.py").write_text("x = 1\n")
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files", "--color", "never"],
                          cwd=project, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

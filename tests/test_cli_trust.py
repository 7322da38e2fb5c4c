"""Issue 9, "no false all-clears": every path that could report "nothing found"
when that is not true, or ignore what the user asked, run through the real
`alloc-lint` command in a subprocess."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import CLEAN, FINDING, SYNTAX_ERROR, alloc_lint, write

PYPROJECT = "pyproject.toml"


def reported(stdout: str) -> list[str]:
    """`path:line` of each finding line, in order."""
    return [line.split(": ALC", 1)[0].rsplit(":", 1)[0] for line in stdout.splitlines() if ": ALC" in line]


def files_reported(stdout: str) -> set[str]:
    return {where.rsplit(":", 1)[0] for where in reported(stdout)}


# --- 1. selectors -----------------------------------------------------------------------


@pytest.mark.parametrize("flags, bad, hint", [
    (["--select", "ALC0001"], "ALC0001", "ALC001"),  # ALC999 is as near ALC002 as ALC001
    (["--select", "FOO"], "FOO", None),
    (["--ignore", "ALC01"], "ALC01", "ALC001"),
    (["--select", "alloc-in-loop-merg"], "alloc-in-loop-merg", "alloc-in-loop-merge"),
    (["--select", "ALC001,E501"], "E501", None),
])
def test_unknown_selector_on_the_command_line_is_an_error(tmp_path, flags, bad, hint):
    write(tmp_path / "merge.py", FINDING)
    proc = alloc_lint("check", *flags, "merge.py", cwd=tmp_path, check=2)
    assert proc.stdout == ""
    assert f"Unknown rule selector `{bad}`" in proc.stderr
    if hint:
        assert f"did you mean `{hint}`?" in proc.stderr
    alloc_lint("fix", *flags, "merge.py", cwd=tmp_path, check=2)


@pytest.mark.parametrize("key, values, code", [
    ("select", '["ALC999"]', 2),
    ("ignore", '["alloc-in-loop"]', 2),
    ("select", '["alloc-in-loop-merge"]', 1),
    ("select", '["alc0"]', 1),
    ("ignore", '["alloc-in-loop-merge"]', 0),
])
def test_selectors_in_pyproject_read_like_the_command_line(tmp_path, key, values, code):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / PYPROJECT, f"[tool.alloc-lint]\n{key} = {values}\n")
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=code)
    if code == 2:
        [line] = proc.stderr.splitlines()
        assert "Unknown rule selector" in line and "pyproject.toml" in line and f"`{key}`" in line


# --- 3. excludes ------------------------------------------------------------------------


def test_force_exclude_applies_excludes_to_named_files(tmp_path):
    write(tmp_path / PYPROJECT, '[tool.alloc-lint]\nextend-exclude = ["generated"]\n')
    write(tmp_path / "generated" / "merge.py", FINDING)
    write(tmp_path / "src" / "merge.py", FINDING)
    named = ["generated/merge.py", "src/merge.py"]
    proc = alloc_lint("check", *named, cwd=tmp_path, check=1)  # named: checked, as Ruff does
    assert files_reported(proc.stdout) == {"generated/merge.py", "src/merge.py"}
    proc = alloc_lint("check", "--force-exclude", *named, cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"src/merge.py"}
    alloc_lint("check", "--force-exclude", "generated/merge.py", cwd=tmp_path, check=0)
    alloc_lint("fix", "--force-exclude", "--diff", "generated/merge.py", cwd=tmp_path, check=0)


def test_excludes_are_anchored_at_the_config_folder(tmp_path):
    project = tmp_path / "project"
    write(project / PYPROJECT, '[tool.alloc-lint]\nextend-exclude = ["src/gen"]\n')
    write(project / "src" / "gen" / "merge.py", FINDING)
    write(project / "src" / "lib" / "merge.py", FINDING)
    write(project / "gen" / "merge.py", FINDING)  # not src/gen: checked
    expected = {"src/lib/merge.py", "gen/merge.py"}
    proc = alloc_lint("check", ".", cwd=project, check=1)
    assert files_reported(proc.stdout) == expected
    proc = alloc_lint("check", str(project), cwd=tmp_path, check=1)  # an absolute path
    assert {p.removeprefix(str(project) + "/") for p in files_reported(proc.stdout)} == expected
    proc = alloc_lint("check", "project", cwd=tmp_path, check=1)  # from the parent
    assert files_reported(proc.stdout) == {"project/" + p for p in expected}
    proc = alloc_lint("check", ".", cwd=project / "src", check=1)  # from inside
    assert files_reported(proc.stdout) == {"lib/merge.py"}
    proc = alloc_lint("check", "--force-exclude", "gen/merge.py", cwd=project / "src", check=0)


def git_init(folder: Path) -> None:
    subprocess.run(["git", "init", "-q", str(folder)], check=True, capture_output=True)


def test_gitignore_is_respected_inside_a_git_work_tree(tmp_path):
    git_init(tmp_path)
    write(tmp_path / ".gitignore", "ignored_dir/\n*_generated.py\n!keep_generated.py\n")
    write(tmp_path / "pkg" / ".gitignore", "local.py\n")
    for name in ("ignored_dir/merge.py", "a_generated.py", "keep_generated.py", "pkg/local.py", "pkg/merge.py"):
        write(tmp_path / name, FINDING)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"keep_generated.py", "pkg/merge.py"}
    proc = alloc_lint("check", "--no-respect-gitignore", ".", cwd=tmp_path, check=1)
    assert len(files_reported(proc.stdout)) == 5
    proc = alloc_lint("check", "pkg", cwd=tmp_path, check=1)  # .gitignore files above the walked folder count
    assert files_reported(proc.stdout) == {"pkg/merge.py"}


def test_gitignore_outside_a_git_work_tree_is_not_read(tmp_path):
    write(tmp_path / ".gitignore", "*.py\n")
    write(tmp_path / "merge.py", FINDING)
    alloc_lint("check", ".", cwd=tmp_path, check=1)


def test_nested_git_repository_has_its_own_ignore_rules(tmp_path):
    git_init(tmp_path)
    write(tmp_path / ".gitignore", "vendored_*.py\n")
    git_init(tmp_path / "sub")
    write(tmp_path / "sub" / ".gitignore", "local.py\n")
    for name in ("vendored_a.py", "sub/vendored_b.py", "sub/local.py", "merge.py"):
        write(tmp_path / name, FINDING)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"merge.py", "sub/vendored_b.py"}


def test_nested_configuration_governs_its_folder_in_a_walk(tmp_path):
    write(tmp_path / PYPROJECT, '[tool.alloc-lint]\nextend-exclude = ["gen"]\n')
    write(tmp_path / "sub" / PYPROJECT, '[tool.alloc-lint]\nignore = ["ALC001"]\nextend-exclude = ["other"]\n')
    for name in ("gen/m.py", "other/m.py", "sub/m.py", "sub/gen/m.py", "sub/other/m.py", "sub/deeper/m.py"):
        write(tmp_path / name, FINDING)
    proc = alloc_lint("check", "--select", "ALC", ".", cwd=tmp_path, check=1)  # --select: every file
    # sub/ has its own configuration: its excludes (not the parent's "gen"); the CLI's --select wins
    assert files_reported(proc.stdout) == {"other/m.py", "sub/m.py", "sub/gen/m.py", "sub/deeper/m.py"}
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)  # without it, sub/ ignores ALC001
    assert files_reported(proc.stdout) == {"other/m.py"}


# --- 4. cache ---------------------------------------------------------------------------


def cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".alloc_lint_cache" in p.parts)


def stats(proc) -> dict:
    return json.loads(proc.stderr.strip().splitlines()[-1])


def cache_records(folder: Path) -> tuple[dict, list]:
    """A cache file read by hand: records of (8-byte little-endian length,
    SHA-1 of the pickle, pickle); the first holds the tables, the others are
    (settings, entries) frames. Returns (tables, frames)."""
    data, at, records = (folder / "results.pickle").read_bytes(), 0, []
    while at < len(data):
        length = int.from_bytes(data[at:at + 8], "little")
        digest, pickled = data[at + 8:at + 28], data[at + 28:at + 28 + length]
        assert len(pickled) == length and hashlib.sha1(pickled).digest() == digest
        records.append(pickle.loads(pickled))
        at += 28 + length
    return records[0]["tables"], records[1:]


def test_cache_is_keyed_by_content_not_stat_data(tmp_path):
    path = write(tmp_path / "merge.py", FINDING)
    old = time.time() - 3600
    os.utime(path, (old, old))
    alloc_lint("check", "merge.py", cwd=tmp_path, check=1)
    warm = alloc_lint("check", "--stats", "merge.py", cwd=tmp_path, check=1)
    assert stats(warm)["cached"] == 1
    # the same size, the modification time put back: only the content tells
    edited = FINDING.replace("torch.empty_like", "torch.zeros_like")  # not an allocator of the rule
    assert len(edited) == len(FINDING)
    path.write_text(edited)
    os.utime(path, (old, old))
    proc = alloc_lint("check", "--stats", "merge.py", cwd=tmp_path, check=0)
    assert stats(proc)["cached"] == 0 and "All checks passed!" in proc.stdout


def test_stat_shortcut_never_hides_an_edit(tmp_path):
    """A file last changed more than the racy window ago is trusted by its
    stat data (no read on a warm run); an edit of the same size with the
    modification time put back still changes its ctime, so it is seen."""
    path = write(tmp_path / "merge.py", FINDING)
    old = time.time() - 3600
    os.utime(path, (old, old))
    time.sleep(2.2)  # past the racy window: the stat key is stored
    alloc_lint("check", "merge.py", cwd=tmp_path, check=1)
    assert stats(alloc_lint("check", "--stats", "merge.py", cwd=tmp_path, check=1))["cached"] == 1
    path.write_text(FINDING.replace("torch.empty_like", "torch.zeros_like"))
    os.utime(path, (old, old))
    alloc_lint("check", "merge.py", cwd=tmp_path, check=0)


def test_unreadable_cache_is_rebuilt(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    alloc_lint("check", ".", cwd=tmp_path, check=1)
    [cache_file] = [p for p in cache_files(tmp_path) if p.name == "results.pickle"]
    cache_file.write_bytes(b"not a pickle")
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert "Found 2 findings." in proc.stdout
    assert stats(alloc_lint("check", "--stats", ".", cwd=tmp_path, check=1))["cached"] == 1


def test_a_damaged_cache_file_is_never_trusted(tmp_path):
    """Bytes appended (a pickle opcode that asks for exabytes among them), a
    byte changed inside a cached finding, the file cut short: each run
    reports what --no-cache reports, with no traceback, and rebuilds the
    cache."""
    write(tmp_path / PYPROJECT, "[tool.alloc-lint]\n")
    write(tmp_path / "merge.py", FINDING)
    for i in range(3):
        write(tmp_path / f"clean{i}.py", CLEAN)
    plain = alloc_lint("check", "--no-cache", ".", cwd=tmp_path, check=1)
    alloc_lint("check", ".", cwd=tmp_path, check=1)
    cache_file = tmp_path / ".alloc_lint_cache" / "results.pickle"
    good = cache_file.read_bytes()
    assert b"output_lse_tmp" in good  # in the finding's fix, pickled with the result
    damaged = {"appended": good + b"\x95" + b"\xff" * 8, "garbage": good + b"garbage",
               "cut short": good[:-5], "a byte of a result": good.replace(b"output_lse_tmp", b"output_lse_tXp", 1)}
    for how, data in damaged.items():
        cache_file.write_bytes(data)
        proc = alloc_lint("check", "--stats", ".", cwd=tmp_path, check=1)
        assert proc.stdout == plain.stdout and stats(proc)["cached"] == 0, how
        assert cache_file.read_bytes() != data, how  # rebuilt
        assert stats(alloc_lint("check", "--stats", ".", cwd=tmp_path, check=1))["cached"] == 4, how


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_in_place_of_the_cache_file_does_not_hang_the_run(tmp_path):
    write(tmp_path / PYPROJECT, "[tool.alloc-lint]\n")
    write(tmp_path / "merge.py", FINDING)
    (tmp_path / ".alloc_lint_cache").mkdir()
    os.mkfifo(tmp_path / ".alloc_lint_cache" / "results.pickle")
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)  # within the helper's timeout
    assert "Found 2 findings." in proc.stdout


def test_file_times_past_64_bit_nanoseconds_are_read_not_trusted(tmp_path):
    """A modification time past 2262 (ext4 stores dates up to 2446) does not
    fit the stat key: such a file is read and hashed on every run, never a
    crash."""
    path = write(tmp_path / "merge.py", FINDING)
    time.sleep(2.2)  # past the racy window (ctime included)
    alloc_lint("check", ".", cwd=tmp_path, check=1)  # a trusted stat key is stored
    year_2300 = 10_413_792_000 * 10**9
    try:
        os.utime(path, ns=(year_2300, year_2300))
    except (OSError, OverflowError):
        pytest.skip("this file system cannot store the year 2300")
    if os.stat(path).st_mtime_ns != year_2300:
        pytest.skip("this file system cannot store the year 2300")
    for _ in range(2):
        proc = alloc_lint("check", "--stats", ".", cwd=tmp_path, check=1)
        assert "Found 2 findings." in proc.stdout and stats(proc)["cached"] == 1  # by content


def test_times_before_1677_are_not_trusted_either(tmp_path):
    """(tmpfs and btrfs store them.) The stamp holds no stat key and
    stat_key gives None: the file is read and hashed, as in the future."""
    from types import SimpleNamespace

    from alloc_lint import cache as cache_module
    from alloc_lint.config import Config

    view = cache_module.Caches(tmp_path).view(Config(), True)
    old = SimpleNamespace(st_mtime_ns=-(10**19), st_ctime_ns=-(10**19), st_size=1, st_ino=2, st_dev=3)
    assert len(view.stamp(b"x", old)) == cache_module.STAMPED
    assert cache_module.stat_key(old) is None


def test_the_cache_is_per_python(monkeypatch):
    """Results depend on the interpreter (which syntax parses, the words of
    its errors): another Python does not reuse them."""
    from alloc_lint import cache as cache_module

    before = cache_module._tool_fingerprint()
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    assert cache_module._tool_fingerprint() != before


def test_no_prefilter_is_part_of_the_cache_key(tmp_path):
    write(tmp_path / "broken.py", "def broken(:\n    pass\n")  # the prefilter skips it: no pattern
    alloc_lint("check", ".", cwd=tmp_path, check=0)
    proc = alloc_lint("check", "--no-prefilter", ".", cwd=tmp_path, check=2)
    assert "broken.py:1:12: error: syntax error" in proc.stderr
    alloc_lint("check", ".", cwd=tmp_path, check=0)


def test_one_cache_per_project_root_and_one_file_whatever_the_options(tmp_path):
    project = tmp_path / "project"
    write(project / PYPROJECT, '[tool.alloc-lint]\nextra-merge-functions = ["combine"]\n')
    write(project / "src" / "pkg" / "merge.py", FINDING)
    for cwd, flags in ((project, []), (project / "src", []), (project / "src" / "pkg", ["--select", "ALC001"]),
                       (tmp_path, ["--ignore", "ALC"]), (project, ["--select", "ALC", "--no-prefilter"])):
        alloc_lint("check", *flags, ".", cwd=cwd)
    assert [p.relative_to(tmp_path).as_posix() for p in cache_files(tmp_path)
            if not p.name.startswith(".")] == ["project/.alloc_lint_cache/CACHEDIR.TAG",
                                               "project/.alloc_lint_cache/results.pickle"]
    # `clean` removes it
    proc = alloc_lint("clean", cwd=project / "src", check=0)
    assert "Removed 1 cache folder." in proc.stderr
    assert cache_files(tmp_path) == []


def test_parallel_runs_keep_each_others_entries(tmp_path):
    for i in range(12):
        path = write(tmp_path / f"m{i:02d}.py", FINDING if i % 3 == 0 else CLEAN)
        os.utime(path, (time.time() - 3600,) * 2)
    names = sorted(p.name for p in tmp_path.glob("*.py"))
    procs = [subprocess.Popen([sys.executable, "-m", "alloc_lint.cli", "check", *names[i::4]], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(4)]
    for proc in procs:
        proc.wait(timeout=60)
    warm = alloc_lint("check", "--stats", ".", cwd=tmp_path, check=1)
    assert stats(warm)["cached"] == 12, warm.stderr
    assert "Found 8 findings." in warm.stdout


def test_cache_is_bounded(tmp_path, monkeypatch):
    from alloc_lint import cache as cache_module
    from alloc_lint.config import Config

    monkeypatch.setattr(cache_module, "MAX_ENTRIES", 5)
    caches = cache_module.Caches(tmp_path / "c")
    view = caches.view(Config(), True)
    for i in range(8):  # file i last used on day 200 + 50 i: days past 255 must still sort later
        path = write(tmp_path / f"f{i}.py", CLEAN)
        stamp = cache_module.content_hash(path.read_bytes()) + cache_module.DAY.pack(200 + 50 * i)
        view.put(view.key(str(path)), cache_module.entry(stamp, cache_module.NOTHING))
    caches.save()
    kept = {Path(key).name for table in cache_records(tmp_path / "c")[0].values() for key in table}
    assert kept == {"f3.py", "f4.py", "f5.py", "f6.py", "f7.py"}  # the 5 most recently used


def test_fix_uses_the_cache_and_workers(tmp_path):
    for i in range(30):
        path = write(tmp_path / "src" / f"m{i:02d}.py", FINDING if i % 5 == 0 else CLEAN)
        os.utime(path, (time.time() - 3600,) * 2)
    alloc_lint("check", "src", cwd=tmp_path, check=1)
    proc = alloc_lint("fix", "--stats", "-j", "2", "src", cwd=tmp_path, check=0)
    assert stats(proc)["cached"] == 30  # nothing re-read to find what to fix
    assert "Fixed 12 findings in 6 files." in proc.stderr
    alloc_lint("check", "src", cwd=tmp_path, check=0)


# --- 5. configuration per file ----------------------------------------------------------


def test_configuration_is_found_per_file(tmp_path):
    write(tmp_path / "proj" / PYPROJECT, '[tool.alloc-lint]\nignore = ["ALC001"]\n')
    write(tmp_path / "proj" / "merge.py", FINDING)
    write(tmp_path / "other" / "merge.py", FINDING)
    alloc_lint("check", ".", cwd=tmp_path / "proj", check=0)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)  # from the parent: proj/ still ignores
    assert files_reported(proc.stdout) == {"other/merge.py"}
    proc = alloc_lint("check", "proj/merge.py", "other/merge.py", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"other/merge.py"}
    # --config overrides for every file
    write(tmp_path / "lint.toml", "select = ['ALC']\n")
    proc = alloc_lint("check", "--config", "lint.toml", ".", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"other/merge.py", "proj/merge.py"}


def test_underscore_table_is_an_error(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / PYPROJECT, '[tool.alloc_lint]\nignore = ["ALC001"]\n')
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert "[tool.alloc_lint]" in line and "[tool.alloc-lint]" in line


def test_unknown_key_lists_the_valid_keys(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    write(tmp_path / PYPROJECT, '[tool.alloc-lint]\nextra-alocators = ["x.y"]\n')
    proc = alloc_lint("check", "merge.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    assert "unknown key `extra-alocators`" in line and "did you mean `extra-allocators`?" in line
    for key in ("extra-merge-functions", "extend-exclude", "per-file-ignores", "select", "ignore"):
        assert key in line


def test_config_for_file_api(tmp_path):
    from alloc_lint import config

    write(tmp_path / "a" / PYPROJECT, '[tool.alloc-lint]\nextra-allocators = ["m.alloc"]\n')
    write(tmp_path / "a" / "b" / PYPROJECT, '[project]\nname = "b"\n')  # no table: skipped
    cfg = config.for_file(tmp_path / "a" / "b" / "c.py")
    assert cfg.allocators == ("torch.empty_like", "m.alloc") and cfg.root == str(tmp_path / "a")
    write(tmp_path / "a" / PYPROJECT, '[tool.alloc-lint]\nextra-allocators = ["m.other"]\n')
    assert config.for_file(tmp_path / "a" / "x.py").allocators[-1] == "m.other"  # read afresh


# --- 7. what is checked, and what is skipped -----------------------------------------


def test_named_non_python_file_is_skipped_and_said(tmp_path):
    write(tmp_path / "notes.md", FINDING)
    proc = alloc_lint("check", "notes.md", cwd=tmp_path, check=0)
    assert proc.stderr.splitlines() == ["notes.md: warning: skipped: not a Python file (*.py, *.pyi or a python "
                                        "shebang)"]
    assert proc.stdout == "No Python files checked.\n"  # not "All checks passed!"
    write(tmp_path / "tool", "#!/usr/bin/env python3\n" + FINDING)  # a script: Python
    proc = alloc_lint("check", "tool", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"tool"}


def test_pyi_files_are_walked_like_named_ones(tmp_path):
    write(tmp_path / "pkg" / "merge.pyi", FINDING)
    proc = alloc_lint("check", ".", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"pkg/merge.pyi"}
    proc = alloc_lint("check", "pkg/merge.pyi", cwd=tmp_path, check=1)
    assert files_reported(proc.stdout) == {"pkg/merge.pyi"}


# --- 9. newer Python ---------------------------------------------------------------------

NEWER = [((3, 12), "def first[T](items: list[T]) -> T:\n    return items[0]\n", "type parameters"),
         ((3, 12), "type Pair = tuple[int, int]\n", "`type` alias"),
         ((3, 14), "greeting = t'hello {name}'\n", "template string")]


@pytest.mark.parametrize("version, code, what", [n for n in NEWER if sys.version_info[:2] < n[0]] or
                         [pytest.param(None, None, None, marks=pytest.mark.skip("no syntax newer than this Python"))])
def test_file_for_a_newer_python_says_which(tmp_path, version, code, what):
    write(tmp_path / "new.py", FINDING + "\n" + code)
    proc = alloc_lint("check", "new.py", cwd=tmp_path, check=2)
    [line] = proc.stderr.splitlines()
    v = f"{version[0]}.{version[1]}"
    assert line.startswith("new.py:18:") and what in line, line
    assert f"needs Python {v} or newer" in line and f"python{v} -m alloc_lint" in line


def test_python_dash_m_alloc_lint_runs_the_cli(tmp_path):
    write(tmp_path / "merge.py", FINDING)
    proc = subprocess.run([sys.executable, "-m", "alloc_lint", "check", "merge.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "merge.py:9:26: ALC001" in proc.stdout


# --- 10. the API parses what it is given -------------------------------------------------


def test_check_source_raises_on_a_syntax_error_the_prefilter_would_skip():
    import alloc_lint

    with pytest.raises(alloc_lint.SourceError) as info:
        alloc_lint.check_source("def broken(:\n    pass\n")
    assert (info.value.line, info.value.column) == (1, 12)
    assert alloc_lint.check_source(CLEAN) == []
    with pytest.raises(alloc_lint.SourceError):
        alloc_lint.check_source(SYNTAX_ERROR)


def test_many_files_read_in_workers_give_the_same_report(tmp_path):
    """Over MIN_READS_FOR_WORKERS files a cold run reads and prefilters in worker
    processes: the report (findings, errors, exit code) and the cache it leaves
    are the same as one process's, cold and warm."""
    from alloc_lint.engine import MIN_READS_FOR_WORKERS

    finding = ("import torch\n\ndef run(x, parts):\n    acc = torch.zeros_like(x)\n    for p in parts:\n"
               "        tmp = torch.empty_like(acc)\n        torch.add(acc, p, out=tmp)\n        acc = tmp\n"
               "    return acc\n")
    for i in range(MIN_READS_FOR_WORKERS + 40):
        text = finding if i % 50 == 0 else f"x = {i}\nfor i in range(3):\n    x += i\n"
        (tmp_path / f"m{i:04}.py").write_text(text)
    (tmp_path / "broken.py").write_text("import torch\nfor x in xs:\n    t = torch.empty_like(x\n")
    (tmp_path / "latin.py").write_bytes(b"x = '\xff'\n")
    runs = {}
    for jobs in ("1", "2"):
        for cache in ("--no-cache", f"--cache-dir={tmp_path / ('cache' + jobs)}"):
            for _ in range(2):  # cold, then warm
                proc = alloc_lint("check", "-j", jobs, cache, ".", cwd=tmp_path, check=None)
                runs.setdefault(proc.returncode, set()).add((proc.stdout, proc.stderr))
                assert "m0000.py" in proc.stdout
                assert "latin.py" in proc.stdout + proc.stderr
    assert list(runs) == [2] and len(runs[2]) == 1, runs  # exit 2: the undecodable file


def test_a_worker_that_dies_is_an_error_not_a_gap_in_the_report(tmp_path, monkeypatch):
    """A forked reader that dies (killed, out of memory) takes its share of
    the files with it: the run must fail, never report those files clean."""
    from alloc_lint import engine
    from alloc_lint.config import Config

    for i in range(engine.MIN_READS_FOR_WORKERS + 40):
        (tmp_path / f"m{i:04}.py").write_text(f"x = {i}\n")
    parent, real = os.getpid(), engine._read_and_parse_many

    def dies_in_a_worker(task):
        if os.getpid() != parent:
            os._exit(9)
        return real(task)

    monkeypatch.setattr(engine, "_read_and_parse_many", dies_in_a_worker)
    with pytest.raises(RuntimeError, match="worker process failed"):
        engine.check_paths([str(tmp_path)], Config(), jobs=2)
    monkeypatch.setattr(engine, "_read_and_parse_many", real)
    report = engine.check_paths([str(tmp_path)], Config(), jobs=2)
    assert len(report.checked) == engine.MIN_READS_FOR_WORKERS + 40 and not report.errors


def test_progress_of_a_run_in_workers_counts_every_process_files(tmp_path):
    """Progress counts the files the forked readers have done too (not only
    this process's), never goes back, and ends at the total."""
    from alloc_lint import engine
    from alloc_lint.config import Config

    total = 4 * engine.MIN_READS_FOR_WORKERS
    for i in range(total):
        (tmp_path / f"m{i:04}.py").write_text(f"x = {i}\n")
    seen = []
    engine.check_paths([str(tmp_path)], Config(), jobs=2, progress=lambda done, of: seen.append((done, of)))
    counts = [done for done, _ in seen]
    assert {of for _, of in seen} == {total} and counts == sorted(counts) and counts[-1] == total
    assert len(counts) > 3  # told along the way, not only at the end


def test_after_a_fresh_checkout_the_cache_answers_by_content_in_workers(tmp_path):
    """Every file's stat data changes (a fresh checkout, a CI cache restored):
    the workers read and hash the files and reuse the results of unchanged
    content, while a file edited to the same size with its mtime put back is
    checked again, wherever it falls in the order."""
    from alloc_lint.engine import MIN_READS_FOR_WORKERS

    finding = ("import torch\n\ndef run(x, parts):\n    acc = torch.zeros_like(x)\n    for p in parts:\n"
               "        tmp = torch.empty_like(acc)\n        torch.add(acc, p, out=tmp)\n        acc = tmp\n"
               "    return acc\n")
    total = 3 * MIN_READS_FOR_WORKERS
    for i in range(total):
        (tmp_path / "src" / f"m{i:04}.py").parent.mkdir(exist_ok=True)
        (tmp_path / "src" / f"m{i:04}.py").write_text(finding if i == total - 1 else f"x = {i:04}\n")
    args = ("check", "--stats", "-j", "2", "--cache-dir", tmp_path / "cache", "src")
    time.sleep(2.1)  # past the racy window: the cold run trusts the files' stat data
    cold = alloc_lint(*args, cwd=tmp_path, check=1)
    old = time.time() - 3600
    for i, path in enumerate(sorted((tmp_path / "src").iterdir())):
        if i == total - 1:  # the finding, late in the order: same size, mtime put back
            mtime = path.stat().st_mtime
            path.write_text(finding.replace("torch.add(acc, p, out=tmp)", "torch.sub(acc, p, out=tmp)"))
            os.utime(path, (mtime, mtime))
        elif i < 2 * MIN_READS_FOR_WORKERS:  # new stat data; the rest keep theirs (hits without a read)
            os.utime(path, (old, old))
    warm = alloc_lint(*args, cwd=tmp_path, check=1)
    stats = json.loads(warm.stderr.strip().splitlines()[-1])
    assert stats["cached"] == total - 1 and stats["files"] == total, stats  # all but the edited file
    assert f"m{total - 1:04}.py" in cold.stdout and f"m{total - 1:04}.py" in warm.stdout


def test_summary_of_held_back_fixes_with_and_without_a_safe_fallback(tmp_path):
    """Two findings whose preferred fix is the same unsafe form, one with a
    safe fix to apply meanwhile and one without: the summary names both
    (it once failed comparing the missing form with a present one)."""
    write(tmp_path / "a.py", "import torch\nfrom lib import attend\n\ndef blend(out, a, b):\n"
          "    torch.add(a, b, out=out)\n    TRACE.append(out)\nTRACE = []\n\n\ndef run(x, parts):\n"
          "    out = torch.full_like(x, 0.5)\n    for p in parts:\n        o = attend(x, p)\n"
          "        buf = torch.empty_like(out)\n        blend(buf, out, o)\n        out = buf\n        del buf\n"
          "    return out\n")
    write(tmp_path / "b.py", "import torch\n\n\ndef run(x, parts):\n    acc = x.clone()\n"
          "    with torch.inference_mode():\n        for p in parts:\n            tmp = torch.empty_like(acc)\n"
          "            torch.add(acc, p, out=tmp)\n            acc = tmp\n    return acc\n")
    proc = alloc_lint("check", "--no-cache", "a.py", "b.py", cwd=tmp_path, check=1)
    held = [line for line in proc.stdout.splitlines() if "`--unsafe-fixes` would apply" in line]
    assert len(held) == 2, proc.stdout
    assert any(line.startswith("1 finding would take") for line in held), held


def test_worker_entries_are_saved_as_pickled_frames_and_reused(tmp_path, monkeypatch):
    """A forked worker's cache entries are written to the cache file as the
    worker pickled them (frames after the main table, written to a temporary
    file as the worker goes): the next run finds
    every file, whichever process checked it; past MAX_ENTRIES the frames are
    merged and the least recently used entries dropped."""
    from alloc_lint import cache as cache_module
    from alloc_lint import engine
    from alloc_lint.config import Config

    total = 2 * engine.MIN_READS_FOR_WORKERS + 40
    for i in range(total):
        path = write(tmp_path / "src" / f"m{i:04}.py", FINDING if i % 100 == 0 else f"x = {i}\n")
        os.utime(path, (time.time() - 3600,) * 2)

    monkeypatch.setattr(engine, "FRAME_ENTRIES", 100)  # the worker writes a frame every 100 entries or so
    cold = engine.check_paths([str(tmp_path / "src")], Config(), jobs=2, cache=cache_module.Caches(tmp_path / "c"))
    tables, frames = cache_records(tmp_path / "c")
    assert len(frames) > 2, "the worker's entries were not written as frames as it went"
    assert sum(map(len, tables.values())) + sum(len(entries) for _, entries in frames) == total
    warm = engine.check_paths([str(tmp_path / "src")], Config(), jobs=1, cache=cache_module.Caches(tmp_path / "c"))
    assert warm.stats.cached == total
    assert [(d.filename, d.line) for d in warm.diagnostics] == [(d.filename, d.line) for d in cold.diagnostics]
    assert len(cold.diagnostics) == 2 * len(range(0, total, 100))

    engine.check_paths([str(tmp_path / "src")], Config(), jobs=1, cache=cache_module.Caches(tmp_path / "f"))
    assert len(cache_records(tmp_path / "f")[1]) > 2  # one process seals frames as it goes too
    warm = engine.check_paths([str(tmp_path / "src")], Config(), jobs=2, cache=cache_module.Caches(tmp_path / "f"))
    assert warm.stats.cached == total

    monkeypatch.setattr(engine, "_spill_file", lambda: None)  # no temporary file: frames come through the pipe
    engine.check_paths([str(tmp_path / "src")], Config(), jobs=2, cache=cache_module.Caches(tmp_path / "e"))
    assert len(cache_records(tmp_path / "e")[1]) > 2
    warm = engine.check_paths([str(tmp_path / "src")], Config(), jobs=1, cache=cache_module.Caches(tmp_path / "e"))
    assert warm.stats.cached == total

    monkeypatch.setattr(cache_module, "MAX_ENTRIES", total - 100)
    engine.check_paths([str(tmp_path / "src")], Config(), jobs=2, cache=cache_module.Caches(tmp_path / "d"))
    tables, frames = cache_records(tmp_path / "d")
    assert not frames and sum(map(len, tables.values())) == total - 100


def test_a_spill_file_that_cannot_be_written_costs_cache_entries_not_the_run(tmp_path, monkeypatch):
    """A worker whose temporary file for cache frames fails (a full disk)
    drops those entries: the run's report is whole and the cache it leaves
    is still sound (the next run re-checks the lost files)."""
    import errno
    import io

    from alloc_lint import cache as cache_module
    from alloc_lint import engine
    from alloc_lint.config import Config

    class Full(io.BytesIO):
        def write(self, data):
            if self.tell() > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    total = 2 * engine.MIN_READS_FOR_WORKERS + 40
    for i in range(total):
        path = write(tmp_path / "src" / f"m{i:04}.py", FINDING if i % 100 == 0 else f"x = {i}\n")
        os.utime(path, (time.time() - 3600,) * 2)
    monkeypatch.setattr(engine, "FRAME_ENTRIES", 50)
    monkeypatch.setattr(engine, "_spill_file", Full)
    src = [str(tmp_path / "src")]
    plain = engine.check_paths(src, Config(), jobs=2)
    cold = engine.check_paths(src, Config(), jobs=2, cache=cache_module.Caches(tmp_path / "c"))
    warm = engine.check_paths(src, Config(), jobs=2, cache=cache_module.Caches(tmp_path / "c"))
    assert not cold.errors and not warm.errors
    assert cold.diagnostics == plain.diagnostics == warm.diagnostics
    assert sorted(cold.checked) == sorted(warm.checked) == sorted(plain.checked)
    assert 0 < warm.stats.cached < total  # the main process's entries and the worker's from the pipe


def test_a_file_has_one_cache_entry_however_its_path_is_spelled(tmp_path):
    """The cache key is the path from the project root, whether the file was
    named from the root, from a subfolder, by an absolute path or with `./`."""
    project = tmp_path / "project"
    write(project / PYPROJECT, "[tool.alloc-lint]\n")
    for i in range(3):
        path = write(project / "src" / f"m{i}.py", FINDING if i == 0 else CLEAN)
        os.utime(path, (time.time() - 3600,) * 2)
    alloc_lint("check", ".", cwd=project, check=1)
    for cwd, target in ((project, "src"), (project / "src", "."), (tmp_path, str(project)),
                        (project, "./src/m0.py"), (project / "src", "../src/m0.py"), (tmp_path, "project/src")):
        proc = alloc_lint("check", "--stats", target, cwd=cwd, check=1)
        assert stats(proc)["cached"] == stats(proc)["files"] > 0, (cwd, target, proc.stderr)
    tables, frames = cache_records(project / ".alloc_lint_cache")
    assert not frames  # small runs write no frames
    assert [sorted(table) for table in tables.values()] == [["src/m0.py", "src/m1.py", "src/m2.py"]]

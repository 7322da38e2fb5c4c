"""Bad input at scale: huge and deeply nested files, files that vanish or
change between listing, checking and fixing. Never a traceback; one line per
bad file; the other files still checked."""
import subprocess
import sys

from alloc_lint import engine
from alloc_lint.config import Config

FINDING = '''import torch


def merge(chunks):
    acc = None
    for c in chunks:
        if acc is None:
            acc = c
            continue
        tmp = torch.empty_like(acc)
        torch.add(acc, c, out=tmp)
        acc = tmp
    return acc
'''


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "alloc_lint.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_a_50000_line_file(tmp_path):
    filler = "".join(f"value_{i} = {i}\n" for i in range(50_000))
    (tmp_path / "big.py").write_text(filler + FINDING)
    run = cli("check", "--no-cache", "big.py", cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stdout.startswith(f"big.py:{50_000 + 10}:15: ALC001")
    run = cli("fix", "big.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "big.py").read_text().startswith(filler)


def test_deep_nesting_is_one_line_not_a_traceback(tmp_path):
    # Brackets nested past the parser's limit, and an expression deep enough
    # to exhaust recursion while compiling: both must be one-line errors.
    (tmp_path / "brackets.py").write_text(FINDING + "x = " + "(" * 300 + "1" + ")" * 300 + "\n")
    (tmp_path / "chain.py").write_text(FINDING + "x = " + "-" * 200_000 + "1\n")
    (tmp_path / "good.py").write_text(FINDING)
    run = cli("check", "--no-cache", ".", cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    errors = run.stderr.strip().splitlines()
    assert [e.split(":")[0] for e in errors] == ["brackets.py", "chain.py"]
    assert "good.py:10:15: ALC001" in run.stdout


def test_deeply_nested_blocks(tmp_path):
    body, indent = [], ""
    for i in range(19):  # Python allows 20 statically nested blocks
        body.append(f"{indent}if x{i}:")
        indent += "    "
    nested = "\n".join(body) + "\n" + "".join(indent + line + "\n" for line in FINDING.splitlines()[3:])
    (tmp_path / "nested.py").write_text("import torch\n" + nested)
    run = cli("check", "--no-cache", "nested.py", cwd=tmp_path)
    assert run.returncode == 1 and "ALC001" in run.stdout, run.stderr


def test_file_deleted_between_listing_and_reading(tmp_path, monkeypatch):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(FINDING)
    read = engine._read

    def delete_then_read(path, *args):
        if path.endswith("a.py"):
            (tmp_path / "a.py").unlink()
        return read(path, *args)

    monkeypatch.setattr(engine, "_read", delete_then_read)
    report = engine.check_paths([str(tmp_path)], Config())
    assert [e.filename.rsplit("/", 1)[-1] for e in report.errors] == ["a.py"]
    assert "No such file" in report.errors[0].message
    assert {d.filename.rsplit("/", 1)[-1] for d in report.diagnostics} == {"b.py"}


def test_file_deleted_or_changed_between_check_and_fix(tmp_path):
    (tmp_path / "gone.py").write_text(FINDING)
    (tmp_path / "kept.py").write_text(FINDING)
    assert cli("check", ".", cwd=tmp_path).returncode == 1
    (tmp_path / "gone.py").unlink()
    run = cli("fix", "gone.py", "kept.py", cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if "error" in line] == \
        ["gone.py: error: no such file or directory"]
    assert "if tmp is None" in (tmp_path / "kept.py").read_text()
    # A cached result must not hide an edit: the changed file is checked again.
    (tmp_path / "kept.py").write_text(FINDING)
    assert cli("check", "kept.py", cwd=tmp_path).returncode == 1

"""The Python API, the LibCST codemod command, and atomic writes."""
import os
import subprocess
import sys

import pytest

import alloc_lint
from alloc_lint import api

SOURCE = '''import torch


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


def test_check_source_and_fix_source():
    found = alloc_lint.check_source(SOURCE, "m.py")
    assert [(d.code, d.line, d.column) for d in found] == [("ALC001", 10, 26), ("ALC001", 11, 30)]
    assert [f.applicability for f in found[0].fixes] == ["unsafe", "safe"]
    safe = alloc_lint.fix_source(SOURCE)
    assert (safe.fixed, safe.held_back, safe.remaining) == (2, 2, [])
    assert "output_tmp_alt" in safe.text
    unsafe = alloc_lint.fix_source(SOURCE, unsafe_fixes=True)
    assert (unsafe.fixed, unsafe.held_back) == (2, 0)
    assert "output, output_tmp = output_tmp, output" in unsafe.text
    assert alloc_lint.fix_source(unsafe.text).text == unsafe.text


def test_check_source_raises_on_unparsable_text():
    with pytest.raises(alloc_lint.SourceError):
        alloc_lint.check_source("for x in y:\n    t = torch.empty_like(a)\n    f(t, a)\n    a = t\n  )")


def test_libcst_codemod_command(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(SOURCE)
    run = subprocess.run([sys.executable, "-m", "libcst.tool", "codemod", "-x", "--no-format",
                          "alloc_lint.codemod.AllocInLoopMergeCommand", "--unsafe-fixes", str(path)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert path.read_text() == alloc_lint.fix_source(SOURCE, unsafe_fixes=True).text


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "m.py"
    path.write_text(SOURCE)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.write_atomically(str(path), b"half", expected_old=SOURCE.encode())
    assert path.read_text() == SOURCE
    assert os.listdir(tmp_path) == ["m.py"]  # no temporary file left behind


def test_write_refuses_a_file_changed_since_it_was_read(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(SOURCE + "# edited meanwhile\n")
    with pytest.raises(api.FileChanged):
        api.write_atomically(str(path), b"new", expected_old=SOURCE.encode())
    assert path.read_text().endswith("# edited meanwhile\n")
    assert os.listdir(tmp_path) == ["m.py"]


def test_write_keeps_permissions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(SOURCE)
    os.chmod(path, 0o640)
    api.write_atomically(str(path), b"x = 1\n", expected_old=SOURCE.encode())
    assert path.read_text() == "x = 1\n" and (os.stat(path).st_mode & 0o777) == 0o640

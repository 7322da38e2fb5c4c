"""The Python API: check and fix source text, and fix files atomically."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from . import engine
from .config import Config
from .diagnostics import Diagnostic
from .edits import FixError, apply_operations, fix_edits

MAX_PASSES = 5  # fixing re-checks the result; one pass normally suffices


def check_source(text: str, filename: str = "<string>", config: Config | None = None) -> list[Diagnostic]:
    """Diagnostics for `text`, with `noqa` applied. Always parses the text
    (the text prefilter that lets `alloc-lint check` skip files is not used
    here), so it raises engine.SourceError for any text that cannot be parsed,
    whether or not it could hold a finding."""
    return engine.check_text(text, filename, config or Config(), prefilter=False)


@dataclass
class FixResult:
    text: str
    fixed: int = 0  # findings fixed
    held_back: int = 0  # findings fixed the safe way whose preferred fix is unsafe
    remaining: list[Diagnostic] = field(default_factory=list)  # findings left
    error: str | None = None  # why fixes could not be applied, if they could not

    @property
    def changed(self) -> bool:
        return self.fixed > 0


def _operations(diagnostics, unsafe_fixes: bool) -> list:
    """The operations of every fix to apply, each group's fix once (the
    diagnostics of one group share it)."""
    seen, operations = set(), []
    for d in diagnostics:
        fix = d.fix_for(unsafe_fixes)
        if fix is not None and fix.operations not in seen:
            seen.add(fix.operations)
            operations.extend(fix.operations)
    return operations


def fix_source(text: str, filename: str = "<string>", config: Config | None = None,
               unsafe_fixes: bool = False) -> FixResult:
    """Apply every fix allowed by `unsafe_fixes` until none is left."""
    config = config or Config()
    result = FixResult(text)
    diagnostics = engine.check_text(text, filename, config)
    for _ in range(MAX_PASSES):
        fixable = [d for d in diagnostics if d.fix_for(unsafe_fixes)]
        if not fixable:
            break
        try:
            result.text = apply_operations(result.text, _operations(fixable, unsafe_fixes))
        except FixError as exc:
            result.error = str(exc)
            break
        result.fixed += len(fixable)
        if not unsafe_fixes:
            result.held_back += sum(1 for d in fixable if d.held_back_fix())
        diagnostics = engine.check_text(result.text, filename, config)
    result.remaining = diagnostics
    return result


def attach_edits(text: str, diagnostics: list[Diagnostic]) -> None:
    """Fill in each fix's text edits (for JSON and SARIF output). `text` is
    the text the diagnostics were found in. A fix whose operations cannot be
    carried out is reported without edits."""
    done = {}
    for d in diagnostics:
        for fix in d.fixes:
            if fix.operations not in done:
                try:
                    done[fix.operations] = fix_edits(text, fix.operations)
                except FixError:
                    done[fix.operations] = None
            fix.edits = done[fix.operations]


class FileChanged(Exception):
    pass


def write_atomically(path: str, data: bytes, expected_old: bytes | None = None) -> None:
    """Replace `path` with `data` through a temporary file in the same folder
    and a rename: readers see the old or the new file, never half of one.
    Refuses (FileChanged) if the file no longer holds `expected_old`."""
    folder = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=".alloc-lint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if expected_old is not None:
            with open(path, "rb") as handle:
                if handle.read() != expected_old:
                    raise FileChanged(f"{path} changed on disk since it was read; not overwritten")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

"""The Python API: check and fix source text, and fix files atomically."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from . import engine
from .config import Config
from .diagnostics import Diagnostic

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


def _unique_fixes(diagnostics, unsafe_fixes: bool):
    seen, fixes = set(), []
    for d in diagnostics:
        fix = d.fix_for(unsafe_fixes)
        if fix is not None and id(fix.plan) not in seen:
            seen.add(id(fix.plan))
            fixes.append(fix)
    return fixes


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
        from .fixer import FixError, apply_plans  # LibCST is only imported when something is fixed

        try:
            result.text = apply_plans(result.text, [f.plan for f in _unique_fixes(fixable, unsafe_fixes)])
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
    """Fill in each fix's text edits (for JSON and SARIF output)."""
    from .fixer import FixError, apply_plans, line_edits

    done = {}
    for d in diagnostics:
        for fix in d.fixes:
            key = id(fix.plan)
            if key not in done:
                try:
                    done[key] = line_edits(text, apply_plans(text, [fix.plan]))
                except FixError:
                    done[key] = None  # reported without edits
            fix.edits = done[key]


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

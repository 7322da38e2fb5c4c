"""Find files, read them, skip what cannot match, parse once, run every rule,
apply `noqa`. Shared by the CLI, the flake8 plugin and the Python API."""
from __future__ import annotations

import ast
import codecs
import fnmatch
import io
import os
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from .analysis.names import last_names
from .analysis.prefilter import might_have_finding
from .config import Config
from .diagnostics import Diagnostic, FileError
from .lines import split_lines
from .rules import ALL_RULES, FileContext


class SourceError(Exception):
    """A file that cannot be decoded or parsed; the message is one line."""


@dataclass
class Source:
    text: str
    encoding: str = "utf-8"
    bom: bool = False


def decode(data: bytes) -> Source:
    """Decode as Python does: BOM, then a PEP 263 coding cookie, else UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        raise SourceError(f"cannot decode: {exc}") from None
    bom = data.startswith(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8-sig" if bom else encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
        where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
        raise SourceError(f"cannot decode as {encoding}{where}: {reason}") from None
    return Source(text, "utf-8" if encoding == "utf-8-sig" else encoding, bom)


def encode(source: Source, text: str) -> bytes:
    data = text.encode(source.encoding)
    return codecs.BOM_UTF8 + data if source.bom else data


def parse(text: str, filename: str) -> ast.Module:
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        where = f"{exc.lineno}:{(exc.offset or 0)}: " if exc.lineno else ""
        raise SourceError(f"{where}syntax error: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            message = "too deeply nested to parse"
        raise SourceError(f"cannot parse: {message}") from None


# --- prefilter ----------------------------------------------------------------------


def might_match(text: str, config: Config) -> bool:
    """Cheap text checks that only skip files which provably cannot match
    (see analysis/prefilter.py)."""
    return might_have_finding(text, last_names(config.allocators))


# --- noqa ---------------------------------------------------------------------------

_NOQA = re.compile(r"#\s*noqa(?::[\s]?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


def is_suppressed(line: str, code: str) -> bool:
    for match in _NOQA.finditer(line):
        codes = match.group("codes")
        if not codes:
            return True
        if any(code.startswith(c.upper()) for c in re.split(r"[,\s]+", codes) if c):
            return True
    return False


# --- checking -----------------------------------------------------------------------


def check_tree(tree: ast.Module, text: str, filename: str, config: Config) -> list[Diagnostic]:
    """Run every selected rule over an already parsed module (no noqa)."""
    ctx = FileContext(filename, text, tree, config)
    found: list[Diagnostic] = []
    for rule in ALL_RULES:
        if config.is_selected(rule.code, rule.name):
            found.extend(rule.check(ctx))
    found.sort(key=Diagnostic.sort_key)
    return found


def check_text(text: str, filename: str, config: Config, prefilter: bool = True,
               stats: "Stats | None" = None) -> list[Diagnostic]:
    """Diagnostics for one source text, `noqa` applied. Raises SourceError."""
    if prefilter and not might_match(text, config):
        return []
    if stats:
        stats.text_kept += 1
    tree = parse(text, filename)
    diagnostics = check_tree(tree, text, filename, config)
    if stats and diagnostics:
        stats.ast_kept += 1
    if not diagnostics:
        return []
    lines = split_lines(text)
    return [d for d in diagnostics
            if not (0 < d.line <= len(lines) and is_suppressed(lines[d.line - 1], d.code))]


@dataclass
class Stats:
    files: int = 0
    text_kept: int = 0
    ast_kept: int = 0
    libcst_parsed: int = 0
    cached: int = 0


@dataclass
class Report:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)


def read_source(path: str) -> Source:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise SourceError("is a directory") from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    return decode(data)


def check_file(path: str, config: Config, prefilter: bool = True, stats: Stats | None = None):
    """(diagnostics, error) for one file; never raises for bad input."""
    try:
        source = read_source(path)
        return check_text(source.text, path, config, prefilter, stats), None
    except SourceError as exc:
        return [], FileError(path, str(exc))


# --- finding files ------------------------------------------------------------------


def _excluded(path: Path, patterns: tuple[str, ...]) -> bool:
    parts = path.parts
    text = path.as_posix()
    for pattern in patterns:
        if any(fnmatch.fnmatch(part, pattern) for part in parts) or fnmatch.fnmatch(text, pattern):
            return True
    return False


def iter_python_files(paths: list[str], config: Config):
    """Yield (path, None) for each file to check, or (path, FileError).

    Paths named explicitly are always checked; directories are walked for
    `*.py`, skipping excluded names, and never following symlinked folders
    (which could loop)."""
    for given in paths:
        path = Path(given)
        if not os.path.lexists(given):
            yield given, FileError(given, "no such file or directory")
            continue
        if not path.is_dir():
            yield given, None
            continue
        errors = []

        def onerror(exc, errors=errors):
            errors.append(FileError(exc.filename or given, f"cannot read directory: {exc.strerror or exc}"))

        found_any = False
        for root, dirs, files in os.walk(given, onerror=onerror):
            rel_root = Path(root)
            dirs[:] = sorted(d for d in dirs
                             if not _excluded(rel_root / d, config.exclude)
                             and not os.path.islink(os.path.join(root, d)))
            for name in sorted(files):
                if name.endswith(".py"):
                    candidate = rel_root / name
                    if not _excluded(candidate, config.exclude):
                        found_any = True
                        yield str(candidate), None
        for error in errors:
            yield error.filename, error
        if not found_any and not errors:
            yield given, FileError(given, "no Python files found", warning=True)


def check_paths(paths: list[str], config: Config, prefilter: bool = True) -> Report:
    report = Report()
    for path, error in iter_python_files(paths, config):
        if error:
            report.errors.append(error)
            continue
        report.stats.files += 1
        diagnostics, error = check_file(path, config, prefilter, report.stats)
        report.diagnostics.extend(diagnostics)
        if error:
            report.errors.append(error)
    report.diagnostics.sort(key=Diagnostic.sort_key)
    return report

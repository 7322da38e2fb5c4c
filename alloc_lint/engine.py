"""Find files, read them, skip what cannot match, parse once, run every rule,
apply `noqa`. Shared by the CLI, the flake8 plugin and the Python API."""
from __future__ import annotations

import ast
import codecs
import fnmatch
import io
import os
import re
import stat
import tokenize
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    """Does any selected rule's text predicate (`Rule.might_match`) hold? Each
    is sound, so a file for which this is False has no finding at all."""
    return any(rule.might_match(text, config) for rule in ALL_RULES
               if config.is_selected(rule.code, rule.name))


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


def read_bytes(path: str) -> bytes:
    """A file's bytes, or SourceError: never blocks on a FIFO or device."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            kind = "a directory" if os.path.isdir(path) else "not a regular file"
            raise SourceError(f"is {kind}" if kind == "a directory" else kind)
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None


def read_source(path: str) -> Source:
    return decode(read_bytes(path))


def _read(path: str, config: Config, prefilter: bool, hashing: bool):
    """Stage 1, in this process: read, decode, text prefilter.

    Returns (path, stat key, content hash, text to parse or None, result or
    None); a result is (diagnostics, error message, kept by the prefilter) and
    is what the cache stores (fixes are data: edits.py operations)."""
    from .cache import Cache, content_hash

    try:
        stat_key = Cache.stat_key(path)
        data = read_bytes(path)
    except OSError as exc:
        return path, None, None, None, ([], f"cannot read: {exc.strerror or exc}", False)
    except SourceError as exc:
        return path, None, None, None, ([], str(exc), False)
    digest = content_hash(data) if hashing else None
    try:
        text = decode(data).text
    except SourceError as exc:
        return path, stat_key, digest, None, ([], str(exc), False)
    if prefilter and not might_match(text, config):
        return path, stat_key, digest, None, ([], None, False)
    return path, stat_key, digest, text, None


def _parse(item, config: Config):
    """Stage 2, here or in a worker: parse and run the rules on a kept file."""
    path, text = item
    try:
        diagnostics, error = check_text(text, path, config, prefilter=False), None
    except SourceError as exc:
        diagnostics, error = [], str(exc)
    return path, (diagnostics, error, True)


# --- finding files ------------------------------------------------------------------


class _Excluder:
    """Exclude patterns compiled once: a pattern without `/` matches any one
    path component (`build`, `*_pb2.py`), one with `/` the whole path."""

    def __init__(self, patterns: tuple[str, ...]):
        def compile_(items):
            return re.compile("|".join(fnmatch.translate(p) for p in items)) if items else None

        self.name = compile_([p for p in patterns if "/" not in p])
        self.path = compile_([p.rstrip("/") for p in patterns if "/" in p])

    def __call__(self, path: Path, name_only: bool = False) -> bool:
        names = [path.name] if name_only else path.parts
        if self.name and any(self.name.match(n) for n in names):
            return True
        return bool(self.path and self.path.match(path.as_posix()))


def iter_python_files(paths: list[str], config: Config):
    """Yield (path, None) for each file to check, or (path, FileError).

    Paths named explicitly are always checked; directories are walked for
    `*.py`, skipping excluded names, and never following symlinked folders
    (which could loop). A file reached twice (`src src/a.py`, `a.py ./a.py`)
    is yielded once, under the first spelling."""
    seen = set()
    for path, error in _iter_python_files(paths, config):
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            yield path, error


def _iter_python_files(paths: list[str], config: Config):
    for given in paths:
        path = Path(given)
        if not os.path.lexists(given):
            yield given, FileError(given, "no such file or directory")
            continue
        if not path.is_dir():
            yield given, None
            continue
        excluded = _Excluder(config.exclude)
        errors = []

        def onerror(exc, errors=errors):
            errors.append(FileError(exc.filename or given, f"cannot read directory: {exc.strerror or exc}"))

        found_any = False
        for root, dirs, files in os.walk(given, onerror=onerror):
            rel_root = Path(root)
            dirs[:] = sorted(d for d in dirs
                             if not excluded(rel_root / d, name_only=True)
                             and not os.path.islink(os.path.join(root, d)))
            for name in sorted(files):
                if name.endswith(".py"):
                    candidate = rel_root / name
                    if not excluded(candidate, name_only=True):
                        found_any = True
                        yield str(candidate), None
        for error in errors:
            yield error.filename, error
        if not found_any and not errors:
            yield given, FileError(given, "no Python files found", warning=True)


# Parsing is the only stage worth other processes, and only for many files:
# reading and the text prefilter cost less than handing the texts over.
MIN_PARSES_PER_PROCESS = 24


def _parsed(items: list, config: Config, jobs: int):
    if jobs > 1 and len(items) >= 2 * MIN_PARSES_PER_PROCESS:
        import multiprocessing
        from functools import partial

        jobs = min(jobs, len(items) // MIN_PARSES_PER_PROCESS)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(jobs) as pool:
            yield from pool.imap_unordered(partial(_parse, config=config), items)
    else:
        for item in items:
            yield _parse(item, config)


def check_paths(paths: list[str], config: Config, prefilter: bool = True, jobs: int = 1,
                cache=None, progress=None) -> Report:
    """Check files and folders. `cache` is an alloc_lint.cache.Cache or None;
    `progress(done, total)` is called as files are read."""
    report = Report()
    todo = []

    def add(path, result):
        diagnostics, error, kept = result
        report.diagnostics.extend(replace(d, filename=path) for d in diagnostics)
        report.stats.text_kept += kept
        report.stats.ast_kept += bool(diagnostics)
        if error:
            report.errors.append(FileError(path, error))

    for path, error in iter_python_files(paths, config):
        if error:
            report.errors.append(error)
            continue
        report.stats.files += 1
        if cache is not None:
            try:
                hit = cache.lookup(path, cache.stat_key(path))
            except OSError:
                hit = None
            if hit is not None:
                report.stats.cached += 1
                add(path, hit)
                continue
        todo.append(path)

    keys, to_parse = {}, []
    for done, (path, stat_key, digest, text, result) in enumerate(
            (_read(p, config, prefilter, cache is not None) for p in todo), 1):
        if progress:
            progress(done, len(todo))
        keys[path] = (stat_key, digest)
        if result is None:
            to_parse.append((path, text))
            continue
        add(path, result)
        if cache is not None and digest is not None:
            cache.store(path, stat_key, digest, result)
    for path, result in _parsed(to_parse, config, jobs):
        add(path, result)
        stat_key, digest = keys[path]
        if cache is not None and digest is not None:
            cache.store(path, stat_key, digest, result)
    if cache is not None:
        cache.save()
    report.diagnostics.sort(key=Diagnostic.sort_key)
    report.errors.sort(key=lambda e: e.filename)
    return report

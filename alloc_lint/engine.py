"""Find files, read them, skip what cannot match, parse once, run every rule,
apply `noqa`. Shared by the CLI, the flake8 plugin and the Python API."""
from __future__ import annotations

import ast
import codecs
import gc
import io
import os
import re
import stat
import sys
import tokenize
from dataclasses import dataclass, field, replace
from functools import lru_cache

from . import selectors
from .cache import DIGEST, NOTHING, STAMPED, entry, fast_pickle, stamp_of, stat_key
from .config import Config, Resolver
from .diagnostics import Diagnostic, FileError
from .discovery import iter_files, iter_files_absolute
from .lines import split_lines


class SourceError(Exception):
    """A file that cannot be decoded or parsed; the message is one line.
    `line` and `column` (1-based, characters) say where, when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass
class Source:
    text: str
    encoding: str = "utf-8"
    bom: bool = False


def decode(data: bytes) -> Source:
    """Decode as Python does: BOM, then a PEP 263 coding cookie, else UTF-8."""
    if not data.startswith(codecs.BOM_UTF8) and b"coding" not in data[:_first_two_lines_end(data)]:
        try:  # no BOM, no cookie: UTF-8 (what tokenize.detect_encoding would find, without its cost)
            return Source(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass  # the slow path words the error
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


def _first_two_lines_end(data: bytes) -> int:
    """Where a coding cookie can no longer be (after the second line end;
    tokenize reads lines ending at \n, or the whole text when there is none)."""
    first = data.find(b"\n")
    if first < 0:
        return len(data)
    second = data.find(b"\n", first + 1)
    return len(data) if second < 0 else second


def encode(source: Source, text: str) -> bytes:
    data = text.encode(source.encoding)
    return codecs.BOM_UTF8 + data if source.bom else data


def parse(text: str, filename: str) -> ast.Module:
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        message = f"syntax error: {exc.msg}"
        newer = needs_newer_python(text, exc)
        if newer:
            message += newer
        raise SourceError(message, exc.lineno, exc.offset if exc.lineno else None) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            message = "too deeply nested to parse"
        raise SourceError(f"cannot parse: {message}") from None


# Syntax that only newer Pythons parse, looked for on the line where parsing
# failed: (version, what, pattern).
_NEWER_SYNTAX = (
    ((3, 11), "`except*`", re.compile(r"^\s*except\s*\*")),
    ((3, 12), "a `type` alias statement", re.compile(r"^\s*type\s+[A-Za-z_]\w*\s*[\[=]")),
    ((3, 12), "type parameters (`def f[T]`, `class C[T]`)",
     re.compile(r"^\s*(async\s+def|def|class)\s+[A-Za-z_]\w*\s*\[")),
    ((3, 14), "a template string (t-string)", re.compile(r"(?<![\w.])(t|tr|rt)['\"]", re.IGNORECASE)),
    ((3, 14), "`except A, B:` without parentheses", re.compile(r"^\s*except\s+[^(\s:][^:]*,")),
)


def needs_newer_python(text: str, exc: SyntaxError) -> str:
    """", which needs Python 3.12 ..." when the failing line uses syntax of a
    Python newer than the running one; else ""."""
    running = sys.version_info[:2]
    lines = split_lines(text)
    line = lines[exc.lineno - 1] if exc.lineno and 0 < exc.lineno <= len(lines) else ""
    found = [(version, what) for version, what, pattern in _NEWER_SYNTAX
             if version > running and pattern.search(line)]
    if not found and running < (3, 12) and "f-string" in (exc.msg or ""):
        found = [((3, 12), "an f-string that Python 3.12 allows (PEP 701: nested quotes, backslashes, comments)")]
    if not found:
        return ""
    version, what = min(found)
    v = f"{version[0]}.{version[1]}"
    return (f" (the line uses {what}, which needs Python {v} or newer; alloc-lint is running on Python "
            f"{running[0]}.{running[1]}: run it under Python {v}+, e.g. `python{v} -m alloc_lint check ...`)")


# --- prefilter ----------------------------------------------------------------------


def _rules():
    """The rules (`engine.ALL_RULES`), imported on first use: a run that finds
    every result in the cache never loads them."""
    rules = globals().get("ALL_RULES")
    if rules is None:
        from .rules import ALL_RULES as rules

        globals()["ALL_RULES"] = rules
    return rules


def __getattr__(name):  # `engine.ALL_RULES` before first use (tests patch it)
    if name == "ALL_RULES":
        return _rules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def might_match(text: str, config: Config) -> bool:
    """Does any selected rule's text predicate (`Rule.might_match`) hold? Each
    is sound, so a file for which this is False has no finding at all."""
    rules = _selected(_rules(), tuple(config.select), tuple(config.ignore))
    return any(rule.might_match(text, config) for rule in rules)


@lru_cache(maxsize=64)
def _selected(rules, select: tuple, ignore: tuple) -> tuple:
    """The rules a selection runs (asked once per file: worth remembering)."""
    config = Config(select=select, ignore=ignore)
    return tuple(rule for rule in rules if config.is_selected(rule.code, rule.name))


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


# `# alloc-lint: noqa` on a line of its own suppresses every finding in the file,
# `# alloc-lint: noqa: ALC001, ...` those codes (selectors), as Ruff's `# ruff: noqa`.
_FILE_NOQA = re.compile(r"^[ \t\f]*#[ \t]*alloc-lint:[ \t]*noqa(?P<rest>[^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def file_suppressions(text: str) -> tuple[str, ...] | None:
    """Code prefixes suppressed for the whole file ("" for all), or None."""
    if "alloc-lint:" not in text and "ALLOC-LINT:" not in text.upper():
        return None
    found = []
    for match in _FILE_NOQA.finditer(text):
        rest = match.group("rest").strip()
        if not rest.startswith(":"):
            if not rest or rest.startswith("#"):
                return ("",)
            continue
        for item in re.split(r"[,\s]+", rest[1:].split("#", 1)[0]):
            try:
                found.append(selectors.canonical(item))
            except selectors.SelectorError:
                pass  # a comment is not the place to fail a run; unknown codes match nothing
    return tuple(found) or None


# --- checking -----------------------------------------------------------------------


def check_tree(tree: ast.Module, text: str, filename: str, config: Config) -> list[Diagnostic]:
    """Run every selected rule over an already parsed module (no noqa)."""
    from .analysis.scopes import per_file_caches
    from .rules import FileContext

    ctx = FileContext(filename, text, tree, config)
    found: list[Diagnostic] = []
    with per_file_caches():
        for rule in _rules():
            if config.is_selected(rule.code, rule.name):
                found.extend(rule.check(ctx))
    found.sort(key=Diagnostic.sort_key)
    return found


def check_text(text: str, filename: str, config: Config, prefilter: bool = True,
               stats: "Stats | None" = None) -> list[Diagnostic]:
    """Diagnostics for one source text, with `noqa` comments, the file-level
    `# alloc-lint: noqa` and `per-file-ignores` applied. Raises SourceError."""
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
    dropped = (file_suppressions(text) or ()) + config.ignored_codes(filename)
    lines = split_lines(text)
    spans = logical_lines(text) if "noqa" in text.lower() else {}
    return [d for d in diagnostics
            if not selectors.matches(d.code, dropped)
            and not any(0 < n <= len(lines) and is_suppressed(lines[n - 1], d.code)
                        for n in range(*spans.get(d.line, (d.line, d.line + 1))))]


def logical_lines(text: str) -> dict[int, tuple[int, int]]:
    """Physical line -> (first, last + 1) line of the logical line holding it, for
    the lines of multi-line statements: a `# noqa` on any of them applies to all,
    as in flake8."""
    spans: dict = {}
    start = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT) and start is None:
                continue
            if start is None:
                start = token.start[0]
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                end = token.start[0]
                if end > start:
                    for n in range(start, end + 1):
                        spans[n] = (start, end + 1)
                start = None
    except (tokenize.TokenError, SyntaxError):
        pass
    return spans


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
    checked: list[str] = field(default_factory=list)  # every file checked, in order


def read_file(path: str) -> tuple[bytes, os.stat_result]:
    """A file's bytes and stat data, or SourceError. Opened without blocking
    and checked to be a regular file first: never hangs on a FIFO or device.
    (os.read on the descriptor: no buffered file object for a one-shot read.)"""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        if os.path.isdir(path):
            raise SourceError("is a directory") from None
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceError("is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        data = os.read(fd, st.st_size + 1)
        if len(data) > st.st_size:  # it grew since fstat: read the rest
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data, st
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_bytes(path: str) -> bytes:
    """A file's bytes, or SourceError: never blocks on a FIFO or device."""
    return read_file(path)[0]


def read_source(path: str) -> Source:
    return decode(read_bytes(path))


def _error(exc: SourceError) -> tuple:
    return (str(exc), exc.line, exc.column)


def _read(path: str, absolute: str, config: Config, prefilter: bool, view):
    """Stage 1, in this process: cache lookup, read, decode, text prefilter.

    Returns (result, None) when done, or (what the cache needs to store the
    result, or None; text) when the file must be parsed. A result is
    (diagnostics, error or None, kept by the prefilter); an error is
    (message, line, column). Results are what the cache stores (fixes are
    data: edits.py operations). `view`: cache.view(config, prefilter), or
    None without a cache."""
    old = None
    if view is not None:
        key = view.key(absolute, path)
        if not view.cold:  # a cold run looks nothing up
            old, result = _stat_hit(path, key, view)
            if result is not None:
                return result, None
    try:
        data, st = read_file(path)
    except SourceError as exc:
        return ((), _error(exc), False), None
    if view is not None:
        stamp = view.stamp(data, st)
        if old is not None and stamp_of(old)[:DIGEST] == stamp[:DIGEST]:
            return view.hit(key, old, stamp), None
    try:
        text = decode(data).text
    except SourceError as exc:
        result = ((), _error(exc), False)
    else:
        if not prefilter or might_match(text, config):
            return (view and (view, key, stamp)), text
        result = NOTHING
    if view is not None:
        view.put(key, entry(stamp, result))
    return result, None


def _stat_hit(path: str, key: str, view):
    """(old entry, result): the result when the cache view has a trusted stat
    key for the file and it is unchanged (no read), else None."""
    old = view.table.get(key)
    stamp = old and stamp_of(old)
    if stamp and len(stamp) > STAMPED:  # a trusted stat key: no read if it is unchanged
        try:
            current = stat_key(os.stat(path))
        except OSError:
            current = None
        if stamp[STAMPED:] == current:
            return old, view.touch(key, old)
    return old, None


def _parse(item):
    """Stage 2, here or in a worker: parse and run the rules on a kept file."""
    path, text, config = item
    try:
        diagnostics, error = check_text(text, path, config, prefilter=False), None
    except SourceError as exc:
        diagnostics, error = [], _error(exc)
    return path, (tuple(diagnostics), error, True)


# Parsing is the only stage worth other processes, and only for many files:
# reading and the text prefilter cost less than handing the texts over.
MIN_PARSES_PER_PROCESS = 24


# A cold run over many files also reads and prefilters in worker processes
# (one per core, as Ruff does): the text prefilter is most of its time.
MIN_READS_FOR_WORKERS = 512
_WORKER_CACHE = None  # the parent's cache, inherited by forked workers
_WORKER_ITEMS = None  # the parent's list of files, inherited by forked workers
READS_PER_TASK = 32  # files per task: fewer round trips, still balanced at the end
FRAME_ENTRIES = 8192  # cache entries are pickled as a run goes, in frames of about this many
MAX_TASKS = 1024  # (more files: bigger tasks) 4 bytes each in the task pipe: one page


def _read_and_parse_many(bounds: tuple) -> tuple:
    """Stages 1 and 2 for the files items[start:stop], in a worker or here.
    Returns (start, stop, [(index, result) for the results other than
    NOTHING], cache hits): most files find nothing, and sending their paths
    back would cost the parent more than reading them. What the cache must
    store goes to its views, and is sealed into frames every FRAME_ENTRIES."""
    start, stop = bounds
    found, cache = [], _WORKER_CACHE
    hits = cache.hits if cache is not None else 0
    last = view = None  # the config of the last file, and its view (files share their folder's)
    for i in range(start, stop):
        path, config, absolute, prefilter = _WORKER_ITEMS[i]
        if cache is not None and config is not last:
            last, view = config, cache.view(config, prefilter)
        result, text = _read(path, absolute, config, prefilter, view)
        if text is not None:
            stored = result
            _, result = _parse((path, text, config))
            if stored is not None:
                stored_in, key, stamp = stored
                stored_in.put(key, entry(stamp, result))
        if result != NOTHING:
            found.append((i, result))
    if cache is not None:
        cache.seal(FRAME_ENTRIES)
    return start, stop, found, (cache.hits - hits if cache is not None else 0)


def _read_in_workers(items: list, jobs: int, cache, progress=None):
    """Yield (start, stop, found, hits, here) for every task (at least
    READS_PER_TASK files, as _read_and_parse_many returns it), read by this
    process and jobs - 1 forked ones, each claiming the next task from a pipe
    (no pool: its threads, queues and idle parent cost more than a run of this
    size takes). `here`: done in this process, whose cache already counted
    its hits. A worker writes its cache entries to a temporary file as it
    goes, and they join the cache file as it pickled them (`Caches.adopt`).
    A worker that fails or dies is an error, never a silent gap in the
    report. `progress(done, total)` hears how many files are done."""
    global _WORKER_CACHE, _WORKER_ITEMS
    import pickle

    _rules()  # imported once here, not once per worker
    _WORKER_CACHE, _WORKER_ITEMS = cache, items
    size = max(READS_PER_TASK, -(-len(items) // MAX_TASKS))
    tasks = [(i, min(i + size, len(items))) for i in range(0, len(items), size)]
    # The tasks wait in a pipe as 4-byte numbers, written at once (at most
    # 4096 bytes: one atomic write that fits any pipe); each process claims
    # the next by reading 4 bytes, which the kernel hands to one reader whole.
    queue, fill = os.pipe()
    os.write(fill, b"".join(k.to_bytes(4, "little") for k in range(len(tasks))))
    os.close(fill)

    def claim():
        number = os.read(queue, 4)
        return tasks[int.from_bytes(number, "little")] if number else None

    workers = []
    try:
        for _ in range(jobs - 1):
            spill = _spill_file() if cache is not None else None
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the caller's code
                os.close(read_end)
                _work(claim, write_end, spill)
            os.close(write_end)
            workers.append((pid, read_end, spill))
        while (task := claim()) is not None:
            yield (*_read_and_parse_many(task), True)
            if progress:  # every claimed task is done but those the workers hold now
                left = _unclaimed(queue)
                if left is not None:
                    progress(min(len(items), max(0, len(tasks) - left - (jobs - 1)) * size), len(items))
        for pid, read_end, spill in workers:
            with os.fdopen(read_end, "rb") as pipe:
                try:
                    status, value, stored = pickle.load(pipe)
                except (EOFError, pickle.UnpicklingError, ValueError, TypeError):
                    status, value, stored = "error", "it stopped without a whole answer", ()
            if status != "ok":
                raise RuntimeError(f"a worker process failed: {value}")
            for folder, count, where in stored:  # the frame, or where it is in the spill file
                cache.adopt(folder, count, where if isinstance(where, bytes) else (spill, *where))
            for done in value:
                yield (*done, False)
    finally:
        _WORKER_CACHE = _WORKER_ITEMS = None
        os.close(queue)
        for pid, _, _ in workers:
            try:
                os.kill(pid, 9)  # finished already, or this run was interrupted
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass  # reaped already (a host program's SIGCHLD handler)


def _unclaimed(queue: int) -> int | None:
    """Tasks still in the pipe (FIONREAD: bytes unread), or None where the
    system cannot say."""
    try:
        import fcntl
        import termios

        return int.from_bytes(fcntl.ioctl(queue, termios.FIONREAD, bytes(4)), sys.byteorder) // 4
    except (ImportError, OSError, AttributeError):
        return None


def _spill_file():
    """An unnamed temporary file for a worker's cache frames, or None (then
    they come back through the pipe)."""
    import tempfile

    try:
        return tempfile.TemporaryFile()
    except OSError:
        return None


def _work(claim, write_end: int, spill):
    """A forked worker's life: claim tasks until none is left, send the
    results (or the error) through the pipe, exit. Its cache entries are
    pickled in frames as it goes (not all at the end, while the parent
    waits) and written to `spill`; the pipe says where they are."""
    import pickle

    code = 1
    cache, stored = _WORKER_CACHE, []

    def spill_failed():
        # The spill file cannot be written (a full disk): the entries in it
        # are dropped (a cache only saves time), the rest come through the pipe.
        nonlocal spill
        spill = None
        stored[:] = [frame for frame in stored if isinstance(frame[2], bytes)]

    def write_frames(last=False):
        for folder, count, frame in cache.take_frames():
            where = frame
            if spill is not None:
                try:
                    where = (spill.tell(), len(frame))
                    spill.write(frame)
                except OSError:
                    spill_failed()
                    where = frame
            stored.append((folder, count, where))
        if last and spill is not None:
            try:
                spill.flush()
            except OSError:
                spill_failed()

    try:
        with os.fdopen(write_end, "wb") as pipe:
            try:
                if cache is not None:
                    cache.forget_changes()  # from here on: what this worker adds, to send back
                    cache.take_frames()  # the parent's, saved by the parent
                results = []
                while (task := claim()) is not None:
                    results.append(_read_and_parse_many(task))
                    if cache is not None:
                        write_frames()
                if cache is not None:
                    cache.seal()
                    write_frames(last=True)
            except BaseException as exc:  # noqa: B902 (reported by the parent)
                import traceback

                pipe.write(pickle.dumps(("error", f"{exc!r}\n{traceback.format_exc()}", ())))
            else:
                # Pickled into the pipe as it goes: no copy of the whole payload
                # in either process (fresh memory is most of a big run's cost).
                fast_pickle(("ok", results, stored), pipe)
                code = 0
    finally:
        os._exit(code)


def _parsed(items: list, jobs: int):
    if jobs > 1 and len(items) >= 2 * MIN_PARSES_PER_PROCESS:
        import multiprocessing

        jobs = min(jobs, len(items) // MIN_PARSES_PER_PROCESS)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(jobs) as pool:
            yield from pool.imap_unordered(_parse, items)
    else:
        for item in items:
            yield _parse(item)


def as_resolver(config) -> Resolver:
    """A Resolver; a Config given instead governs every file."""
    if isinstance(config, Resolver):
        return config
    resolver = Resolver()
    resolver.fixed = config if config is not None else None
    return resolver


def iter_python_files(paths: list[str], config, force_exclude: bool = False, respect_gitignore: bool = True):
    """Yield (path, None) for each file to check, or (path, FileError)."""
    for path, _, error in iter_files(paths, as_resolver(config), force_exclude, respect_gitignore):
        yield path, error


def check_paths(paths: list[str], config, prefilter: bool = True, jobs: int = 1, cache=None,
                progress=None, force_exclude: bool = False, respect_gitignore: bool = True) -> Report:
    """Check files and folders. `config` is a config.Resolver (configuration
    per file) or one Config for all; `cache` an alloc_lint.cache.Caches or
    None; `progress(done, total)` is called as files are read."""
    resolver = as_resolver(config)
    # Many small objects and no cycles: the cyclic garbage collector only
    # costs time here (about a sixth of a 100,000-file run).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _check_paths(paths, resolver, prefilter, jobs, cache, progress, force_exclude, respect_gitignore)
    finally:
        if collecting:
            gc.enable()


def _check_paths(paths, resolver, prefilter, jobs, cache, progress, force_exclude, respect_gitignore) -> Report:
    report = Report()
    todo = []

    def add(path, result):
        diagnostics, error, kept = result
        report.checked.append(path)
        report.diagnostics.extend(replace(d, filename=path) for d in diagnostics)
        report.stats.text_kept += kept
        report.stats.ast_kept += bool(diagnostics)
        if error:
            message, line, column = error
            report.errors.append(FileError(path, message, line=line, column=column))

    for path, file_config, error, absolute in iter_files_absolute(paths, resolver, force_exclude,
                                                                  respect_gitignore):
        if error:
            report.errors.append(error)
            continue
        report.stats.files += 1
        todo.append((path, file_config, absolute))

    if cache is not None:  # unchanged files with a trusted stat key: no read, no worker
        misses, unchecked = [], []
        last_config = view = None
        for n, item in enumerate(todo):
            if jobs > 1 and len(misses) >= MIN_READS_FOR_WORKERS:
                # Enough work for the workers: they check the rest (`_read` looks
                # the stat key up first), rather than this process alone.
                unchecked = todo[n:]
                break
            path, file_config, absolute = item
            if file_config is not last_config:
                last_config, view = file_config, cache.view(file_config, prefilter)
            result = None if view.cold else _stat_hit(path, view.key(absolute, path), view)[1]
            if result is None:
                misses.append(item)
            else:
                add(path, result)
        todo = misses + unchecked
    if jobs > 1 and len(todo) >= MIN_READS_FOR_WORKERS and hasattr(os, "fork"):
        items = [(path, file_config, absolute, prefilter) for path, file_config, absolute in todo]
        for start, stop, found, hits, here in _read_in_workers(items, jobs, cache, progress):
            if hits and not here:
                cache.view(items[start][1], prefilter).cache.hits += hits
            for i, result in found:
                add(items[i][0], result)
            others = set(range(start, stop)) - {i for i, _ in found}
            report.checked.extend(items[i][0] for i in sorted(others))  # nothing found, no error
        if progress:
            progress(len(todo), len(todo))
        todo = []
    entries, to_parse = {}, []
    last_config = view = None
    for done, (path, file_config, absolute) in enumerate(todo, 1):
        if progress:
            progress(done, len(todo))
        if cache is not None and file_config is not last_config:
            last_config, view = file_config, cache.view(file_config, prefilter)
        result, text = _read(path, absolute, file_config, prefilter, view)
        if cache is not None and done % FRAME_ENTRIES == 0:
            cache.seal(FRAME_ENTRIES)
        if text is None:
            add(path, result)
            continue
        entries[path] = result  # here: where the cache keeps it, or None
        to_parse.append((path, text, file_config))
    report.stats.cached = cache.hits if cache is not None else 0
    for path, result in _parsed(to_parse, jobs):
        if entries[path] is not None:
            view, key, stamp = entries[path]
            view.put(key, entry(stamp, result))
        add(path, result)
    if cache is not None:
        cache.save()
    report.diagnostics.sort(key=Diagnostic.sort_key)
    report.errors.sort(key=lambda e: (e.filename, e.line or 0))
    return report

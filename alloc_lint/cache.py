"""Results cache, one per project root (`.alloc_lint_cache/` next to the
configuration file, as `.ruff_cache/`), keyed by file content.

Entries are grouped by the settings that change a file's result (the
configuration's fingerprint and `--no-prefilter`), keyed by the file's path,
and hold the SHA-1 of the content they were computed for (see `View` for
their layout). A file is read and hashed on every run unless its stat data
(mtime, ctime, size, inode, device) is unchanged and it had last changed
well before it was read: an edit changes ctime even when the mtime is put
back, and the "racy" window of a coarse clock is excluded as git does for its
index. A change to the tool's own code drops the whole cache.

The file is a list of records, each its length, the SHA-1 of its pickle and
the pickle (a damaged file is never trusted): {"tool", "tables"} first, then
any number of (settings, {path: entry}) frames that add to the tables: the
entries of a run, pickled by each process as it goes, a few thousand at a
time (`seal`), and written as they are (the main process never unpickles a
worker's). Saving takes a lock, re-reads the file and merges, so processes running at the
same time (pre-commit batches) keep each other's entries; the write is atomic
(temporary file and rename). The least recently used entries beyond
MAX_ENTRIES are dropped. `alloc-lint clean` removes cache folders.
"""
from __future__ import annotations

import os
import struct
import sys
import time
from pathlib import Path

DEFAULT_DIR = ".alloc_lint_cache"
FILE = "results.pickle"
DIGEST = 20  # bytes of content_hash
DAY = struct.Struct(">H")  # the day an entry was last used (days since 1970; big-endian: sorts as bytes)
STAMPED = DIGEST + DAY.size  # a stamp longer than this ends in a trusted stat key
NOTHING = ((), None, False)  # the result of most files: nothing found, no error, not kept
MAX_ENTRIES = 250_000
MARKER = "# Created by alloc-lint\n*\n"
CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by alloc-lint.\n")


_sha1 = None


def _load_sha1():
    """hashlib.sha1, imported on first use (as pickle, shutil and tempfile
    below): a run with --no-cache needs none of them."""
    global _sha1
    import hashlib

    _sha1 = hashlib.sha1
    return _sha1


def content_hash(data: bytes) -> bytes:
    # SHA-1 as git uses it for content: not for security, and the fastest
    # hashlib digest on current CPUs (hardware SHA extensions).
    return (_sha1 or _load_sha1())(data, usedforsecurity=False).digest()


def _tool_fingerprint() -> str:
    """The version, the package's own code (results of an edited checkout,
    same version number, are not reused) and the Python running it (which
    syntax parses, and the words of its errors, depend on it)."""
    from . import __version__  # here: the engine imports this module while the package initialises

    import hashlib

    digest = hashlib.blake2b(f"{__version__}\0{sys.implementation.cache_tag}\0{sys.version}".encode(),
                             digest_size=8)
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


# Stat data stands for the content only for files last changed well before
# they were read (git's "racy clean" rule): a coarse clock could otherwise
# give an edit made in the same tick the same mtime.
RACY_SECONDS = 2.0


_STAT = struct.Struct(">qqQQQ")
_STAMP = struct.Struct(f">{DIGEST}s{DAY.format[1:]}{_STAT.format[1:]}")  # a trusted stamp in one call


def stat_key(st: os.stat_result) -> bytes | None:
    """The stat data that stands for a file's content, or None when a time
    is outside what 64 bits of nanoseconds hold (before 1677 or after 2262:
    such a file is read and hashed on every run)."""
    try:
        return _STAT.pack(st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)
    except struct.error:
        return None


def entry(stamp: bytes, result) -> bytes | tuple:
    """A cache entry: the stamp alone for a file with nothing to report (most
    files: one object each, quick to create, pickle and load), else (stamp,
    result)."""
    return stamp if result == NOTHING else (stamp, result)


def stamp_of(entry) -> bytes:
    return entry if entry.__class__ is bytes else entry[0]


def result_of(entry):
    return NOTHING if entry.__class__ is bytes else entry[1]


class View:
    """The entries of one cache under one set of settings, keyed by path
    (relative to the project root when under it: a smaller file). An entry's
    stamp is one bytes object: the content hash, the day last used, then the
    stat key when it is trusted. The engine reads `table` and `cold`
    directly and calls `key`, `stamp`, `hit`, `touch` and `put`."""

    def __init__(self, cache: "Cache", settings: str, root: str):
        self.cache = cache
        self.settings = settings
        self.refresh()
        self.root = os.path.join(root, "")
        self.cut = len(self.root)
        self.trust_before_ns = cache.started_ns - int(RACY_SECONDS * 1e9)
        self.today = cache.today
        self.day = DAY.pack(cache.today)

    def refresh(self) -> None:
        """Take up the cache's current tables. `cold`: the table started
        empty, so it holds only what this run added, which the run never
        looks up again (each file is checked once)."""
        self.table = self.cache.table(self.settings)
        self.changed = self.cache.changed_table(self.settings)
        self.cold = self.table is self.changed

    def key(self, absolute: str, path: str = "") -> str:
        """The file's key: its path from the root when under it. `path`, the
        path as given, is that key when run from the root: then it is used,
        not a new string (one per file saved in a cold run)."""
        if absolute[:self.cut] != self.root:
            return absolute
        key = absolute[self.cut:]
        return path if key == path else key

    def stamp(self, data: bytes, st: os.stat_result) -> bytes:
        """The content hash, today, and the stat key if it can be trusted
        (packed at once: this runs for every file of a cold run)."""
        digest = content_hash(data)
        mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
        if mtime < self.trust_before_ns and ctime < self.trust_before_ns:
            try:
                return _STAMP.pack(digest, self.today, mtime, ctime, st.st_size, st.st_ino, st.st_dev)
            except struct.error:
                pass  # a time outside 64-bit nanoseconds (stat_key): not trusted
        return digest + self.day

    def hit(self, key: str, old, stamp: bytes):
        """A reused entry whose content hash matched: remember the day of its
        use (so warm runs mostly write nothing) and a newly trusted stat key.
        Returns the result."""
        self.cache.hits += 1
        if stamp != stamp_of(old):
            self.put(key, entry(stamp, result_of(old)))
        return result_of(old)

    def touch(self, key: str, old):
        """A reused entry whose trusted stat key matched: as `hit`."""
        self.cache.hits += 1
        stamp = stamp_of(old)
        if stamp[DIGEST:STAMPED] != self.day:
            self.put(key, entry(stamp[:DIGEST] + self.day + stamp[STAMPED:], result_of(old)))
        return result_of(old)

    def put(self, key: str, value) -> None:
        self.table[key] = value
        if self.changed is not self.table:
            self.changed[key] = value


class Cache:
    """One cache file: {settings key: {absolute path: entry}}, loaded once."""

    def __init__(self, folder: Path, tool: str):
        self.folder = folder
        self.path = folder / FILE
        self.tool = tool
        self.started_ns = time.time_ns()
        self.today = self.started_ns // (86400 * 10**9)
        self.tables = self._load()
        self.changed: dict[str, dict] = {}
        # Frames from workers: (entries, the frame's bytes or (file, offset, length)).
        self.frames: list[tuple[int, object]] = []
        self.hits = 0

    def _load(self) -> dict:
        import pickle

        # read_file never blocks on a FIFO (imported here: the engine imports this module)
        from .engine import read_file

        try:
            records = _records(read_file(str(self.path))[0])
            head = pickle.loads(next(records))
            if not (isinstance(head, dict) and head.get("tool") == self.tool):
                return {}
            tables = head["tables"]
            for record in records:  # frames added to the tables
                settings, entries = pickle.loads(record)
                tables.setdefault(settings, {}).update(entries)
            if all(isinstance(table, dict) for table in tables.values()):
                return tables
        except Exception:  # noqa: BLE001 - missing, unreadable, damaged, another version: start afresh
            pass
        return {}

    def table(self, settings: str) -> dict:
        table = self.tables.get(settings)
        if table is None:
            table = self.tables[settings] = {}
        return table

    def changed_table(self, settings: str) -> dict:
        """Where new entries are noted for saving: the table itself when it
        started empty (a cold cache: one dict, not two)."""
        if settings not in self.changed:
            table = self.table(settings)
            self.changed[settings] = table if not table else {}
        return self.changed[settings]

    def forget_changes(self) -> None:
        """Note only new changes from here on (once the changes are sealed,
        or in a forked worker, whose parent saves its own). A table that
        started empty held only what this process added, which a run never
        looks up again (each file is checked once): it starts empty again."""
        for settings, changed in self.changed.items():
            if changed is self.tables.get(settings):
                self.tables[settings] = {}
        self.changed = {}

    def changes(self):
        """(settings, entries noted as changed) for each settings with some."""
        return [(settings, changed) for settings, changed in self.changed.items() if changed]

    def seal(self) -> None:
        """Pickle the changes into frames now (while other processes still
        work, not all at the end) and forget them."""
        for settings, changed in self.changes():
            self.frames.append((len(changed), record(fast_pickle((settings, changed)))))
        self.forget_changes()

    def save(self) -> None:
        if not self.frames and not self.changes():
            return
        import tempfile

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, text in ((".gitignore", MARKER), ("CACHEDIR.TAG", CACHEDIR_TAG)):
                if not (self.folder / name).exists():
                    (self.folder / name).write_text(text)
            with _Lock(self.folder / ".lock"):
                if self.path.exists():  # what others saved meanwhile
                    tables = self._load()
                    for settings, changed in self.changes():
                        tables.setdefault(settings, {}).update(changed)
                else:
                    tables = dict(self.changes())
                frames = [_frame_bytes(where) for _, where in self.frames]
                if sum(map(len, tables.values())) + sum(n for n, _ in self.frames) > MAX_ENTRIES:
                    import pickle

                    for frame in frames:
                        settings, entries = pickle.loads(next(_records(frame)))
                        tables.setdefault(settings, {}).update(entries)
                    tables, frames = _bounded(tables), []
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".results-", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(record(fast_pickle({"tool": self.tool, "tables": tables})))
                        for frame in frames:
                            handle.write(frame)
                    os.replace(tmp, self.path)
                except BaseException:
                    os.unlink(tmp)
                    raise
        except OSError:
            pass  # a cache that cannot be written only costs time


_RECORD = struct.Struct("<Q20s")  # a record's header: the length of its pickle, and the pickle's SHA-1


def record(pickled: bytes) -> bytes:
    return _RECORD.pack(len(pickled), content_hash(pickled)) + pickled


def _records(data: bytes):
    """The pickles of a cache file's records, each checked against its hash
    (ValueError on the first that is cut short or damaged)."""
    at = 0
    while at < len(data):
        if at + _RECORD.size > len(data):
            raise ValueError("a record's header is cut short")
        length, digest = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        pickled = data[at:at + length]
        if len(pickled) != length or content_hash(pickled) != digest:
            raise ValueError("a record is cut short or damaged")
        yield pickled
        at += length


def _frame_bytes(where) -> bytes:
    """A worker's frame: given, or read from its spill file."""
    if isinstance(where, bytes):
        return where
    file, offset, length = where
    data = os.pread(file.fileno(), length, offset)
    if len(data) != length:
        raise OSError("a worker's cache frame is cut short")
    return data


def fast_pickle(value, handle=None):
    """Pickled without the memo (`Pickler.fast`): a third of the time for many
    small objects that share nothing worth remembering (cache entries,
    results sent back by workers); the ordinary pickle if there ever is a
    cycle. Written to `handle`, or returned as bytes."""
    import io
    import pickle

    out = handle if handle is not None else io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    try:
        pickler.dump(value)
    except (RecursionError, ValueError):
        out.seek(0)
        out.truncate()
        pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
    return None if handle is not None else out.getvalue()


def _bounded(tables: dict) -> dict:
    """At most MAX_ENTRIES entries, dropping the least recently used."""
    total = sum(len(t) for t in tables.values())
    if total <= MAX_ENTRIES:
        return tables
    ranked = sorted(((stamp_of(value)[DIGEST:STAMPED], settings, key) for settings, table in tables.items()
                     for key, value in table.items()), reverse=True)
    kept: dict = {}
    for _, settings, key in ranked[:MAX_ENTRIES]:
        kept.setdefault(settings, {})[key] = tables[settings][key]
    return kept


class _Lock:
    """An exclusive advisory lock on a file (no-op where fcntl is missing)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: last writer wins, entries merged
            return self
        self.handle = open(self.path, "a+b")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.close()  # closing releases the lock


class Caches:
    """The caches of one run: one per project root, or all in `folder` when
    `--cache-dir` / ALLOC_LINT_CACHE_DIR names one."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).resolve() if folder else None
        self.tool = _tool_fingerprint()
        self.caches: dict[Path, Cache] = {}
        self.by_config: dict[int, tuple] = {}

    @property
    def hits(self) -> int:
        return sum(c.hits for c in self.caches.values())

    def folder_for(self, config) -> Path:
        return self.folder or config.root_path / DEFAULT_DIR

    def view(self, config, prefilter: bool) -> View:
        known = self.by_config.get(id(config))
        if known is None or known[0] is not config or known[1] != prefilter:
            import hashlib

            settings = hashlib.blake2b(f"{config.fingerprint()}\0{prefilter}".encode(), digest_size=8).hexdigest()
            view = View(self._cache(self.folder_for(config)), settings, str(config.root_path))
            known = self.by_config[id(config)] = (config, prefilter, view)
        return known[2]

    def _cache(self, folder: Path) -> Cache:
        if folder not in self.caches:
            self.caches[folder] = Cache(folder, self.tool)
        return self.caches[folder]

    def forget_changes(self) -> None:
        """In a forked worker: note only what it adds from here on."""
        for cache in self.caches.values():
            cache.forget_changes()
        self._refresh_views()

    def _refresh_views(self) -> None:
        for _, _, view in self.by_config.values():
            view.refresh()

    def seal(self, at_least: int = 1) -> None:
        """Cache.seal, once at least `at_least` changes are noted (few
        frames, and the memory of each is reused for the next)."""
        if sum(len(changed) for cache in self.caches.values() for changed in cache.changed.values()) >= at_least:
            for cache in self.caches.values():
                cache.seal()
            self._refresh_views()

    def take_frames(self) -> list[tuple[str, int, bytes]]:
        """A worker's sealed frames for the parent: (cache folder, how many
        entries, the frame)."""
        taken = [(str(folder), count, frame) for folder, cache in self.caches.items()
                 for count, frame in cache.frames]
        for cache in self.caches.values():
            cache.frames = []
        return taken

    def adopt(self, folder: str, count: int, where) -> None:
        """A worker's frame of `count` entries (bytes, or (file, offset,
        length)), saved as it is with this process's entries."""
        self._cache(Path(folder)).frames.append((count, where))

    def save(self) -> None:
        for cache in self.caches.values():
            cache.save()


def clean(folders) -> list[Path]:
    """Remove the cache folders given (only those alloc-lint made); return them."""
    removed = []
    for folder in folders:
        folder = Path(folder)
        marker = folder / ".gitignore"
        try:
            ours = marker.read_text() == MARKER or (folder / FILE).exists()
        except OSError:
            ours = False
        if folder.is_dir() and ours:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

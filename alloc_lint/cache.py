"""Results cache, one per project root (`.alloc_lint_cache/` next to the
configuration file, as `.ruff_cache/`), keyed by file content.

Entries are grouped by the settings that change a file's result (the
configuration's fingerprint and `--no-prefilter`), keyed by the file's path,
and hold the SHA-1 of the content they were computed for. A file is read and
hashed on every run unless its stat data (mtime, ctime, size, inode, device)
is unchanged and it had last changed well before it was read: an edit
changes ctime even when the mtime is put back, and the "racy" window of a
coarse clock is excluded as git does for its index. A change to the tool's
own code drops the whole cache.

Saving takes a lock, re-reads the file and merges, so processes running at the
same time (pre-commit batches) keep each other's entries; the write is atomic
(temporary file and rename). The least recently used entries beyond
MAX_ENTRIES are dropped. `alloc-lint clean` removes cache folders.
"""
from __future__ import annotations

import os
import struct
import time
from pathlib import Path

DEFAULT_DIR = ".alloc_lint_cache"
FILE = "results.pickle"
DIGEST = 20  # bytes of content_hash
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
    """The version, and the package's own code: results of an edited checkout
    (same version number) are not reused."""
    from . import __version__  # here: the engine imports this module while the package initialises

    import hashlib

    digest = hashlib.blake2b(__version__.encode(), digest_size=8)
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


_STAT = struct.Struct("<qqQQQ")


def stat_key(st: os.stat_result) -> bytes:
    return _STAT.pack(st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


class View:
    """The entries of one cache under one set of settings, keyed by path
    (relative to the project root when under it: a smaller file). An entry is
    (content hash followed by the stat key when it is trusted, as one bytes
    object; the result; the day last used): few objects per entry keep the
    cache quick to load and save. The engine reads `table` directly and
    calls `hit` and `put`."""

    def __init__(self, cache: "Cache", settings: str, root: str):
        self.cache = cache
        self.table = cache.table(settings)
        self.changed = cache.changed_table(settings)
        self.root = os.path.join(root, "")
        self.cut = len(self.root)
        self.trust_before = cache.started - RACY_SECONDS
        self.today = cache.today

    def key(self, absolute: str) -> str:
        return absolute[self.cut:] if absolute.startswith(self.root) else absolute

    def packed(self, data: bytes, st: os.stat_result) -> bytes:
        digest = content_hash(data)
        if st.st_mtime < self.trust_before and st.st_ctime < self.trust_before:
            return digest + stat_key(st)
        return digest

    def hit(self, key: str, old: tuple, packed: bytes):
        """A reused entry: remember its use (by the day, so warm runs mostly
        write nothing) and a newly trusted stat key. Returns the result."""
        self.cache.hits += 1
        if old[2] != self.today or packed != old[0]:
            self.put(key, (packed, old[1], self.today))
        return old[1]

    def put(self, key: str, entry: tuple) -> None:
        self.table[key] = entry
        if self.changed is not self.table:
            self.changed[key] = entry


class Cache:
    """One cache file: {settings key: {absolute path: entry}}, loaded once."""

    def __init__(self, folder: Path, tool: str):
        self.folder = folder
        self.path = folder / FILE
        self.tool = tool
        self.started = time.time()
        self.today = int(self.started // 86400)
        self.tables = self._load()
        self.changed: dict[str, dict] = {}
        self.hits = 0

    def _load(self) -> dict:
        import pickle

        try:
            with open(self.path, "rb") as handle:
                data = pickle.load(handle)
            if isinstance(data, dict) and data.get("tool") == self.tool:
                return data["tables"]
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError,
                KeyError, ImportError, IndexError):
            pass  # missing, unreadable or from another version: start afresh
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

    def save(self) -> None:
        if not any(self.changed.values()):
            return
        import tempfile

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, text in ((".gitignore", MARKER), ("CACHEDIR.TAG", CACHEDIR_TAG)):
                if not (self.folder / name).exists():
                    (self.folder / name).write_text(text)
            with _Lock(self.folder / ".lock"):
                tables = self._load() if self.path.exists() else {}  # what others saved meanwhile
                for settings, changed in self.changed.items():
                    tables.setdefault(settings, {}).update(changed)
                tables = _bounded(tables)
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".results-", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        fast_pickle({"tool": self.tool, "tables": tables}, handle)
                    os.replace(tmp, self.path)
                except BaseException:
                    os.unlink(tmp)
                    raise
        except OSError:
            pass  # a cache that cannot be written only costs time


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
    ranked = sorted(((entry[2], settings, key) for settings, table in tables.items()
                     for key, entry in table.items()), reverse=True)
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

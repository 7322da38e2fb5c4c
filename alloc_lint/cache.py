"""Results cache, one per project root (`.alloc_lint_cache/` next to the
configuration file, as `.ruff_cache/`), keyed by file content.

An entry is keyed by the file's absolute path and the settings that change
its result (the configuration's fingerprint and `--no-prefilter`) and holds the
content hash it was computed for. A file is read and hashed on every run
unless its stat data (mtime, ctime, size, inode, device) is unchanged and it
was last changed well before the entry was made: an edit changes ctime even
when the mtime is put back, and the "racy" window of a coarse clock is
excluded as git does for its index. Tool code changes drop the whole cache.

Saving takes a lock, re-reads the file and merges, so processes running at the
same time (pre-commit batches) keep each other's entries; the write is atomic
(temporary file and rename). The least recently used entries beyond
MAX_ENTRIES are dropped. `alloc-lint clean` removes cache folders.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

from . import __version__

DEFAULT_DIR = ".alloc_lint_cache"
FILE = "results.pickle"
MAX_ENTRIES = 250_000
MARKER = "# Created by alloc-lint\n*\n"
CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                "# This file is a cache directory tag created by alloc-lint.\n")


def content_hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _tool_fingerprint() -> str:
    """The version, and the package's own code: results of an edited checkout
    (same version number) are not reused."""
    digest = hashlib.blake2b(__version__.encode(), digest_size=8)
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(package)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


class Entry:
    """The cache slot of one file under one set of settings."""

    __slots__ = ("cache", "key", "stat_key", "trusted", "digest")

    def __init__(self, cache: "Cache", key, st: os.stat_result, trust_before: float):
        self.cache = cache
        self.key = key
        self.stat_key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)
        self.trusted = max(st.st_mtime, st.st_ctime) < trust_before
        self.digest = None

    def by_stat(self):
        old = self.cache.entries.get(self.key)
        if old is not None and old[0] is not None and old[0] == self.stat_key:
            self.cache.hit(self.key, old)
            return old[2]
        return None

    def by_content(self, data: bytes):
        self.digest = content_hash(data)
        old = self.cache.entries.get(self.key)
        if old is not None and old[1] == self.digest:
            self.cache.hit(self.key, old, self.stat_key if self.trusted else None)
            return old[2]
        return None

    def store(self, result):
        if self.digest is not None:
            self.cache.put(self.key, (self.stat_key if self.trusted else None, self.digest, result))
        return result


class Cache:
    """One cache file: {(abs path, settings key): (stat key | None, content
    hash, result, last used)}, loaded lazily."""

    def __init__(self, folder: Path, tool: str):
        self.folder = folder
        self.path = folder / FILE
        self.tool = tool
        self.today = int(time.time() // 86400)
        self.entries = self._load()
        self.changed: dict = {}

    def _load(self) -> dict:
        try:
            with open(self.path, "rb") as handle:
                data = pickle.load(handle)
            if isinstance(data, dict) and data.get("tool") == self.tool:
                return data["entries"]
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError,
                KeyError, ImportError, IndexError):
            pass  # missing, unreadable or from another version: start afresh
        return {}

    def hit(self, key, old, stat_key=...) -> None:
        """A reused entry: remember its use (daily granularity, so warm runs
        mostly write nothing) and a newly trusted stat key."""
        new_stat = old[0] if stat_key is ... else stat_key
        if old[3] != self.today or new_stat != old[0]:
            self.put(key, (new_stat, old[1], old[2]))

    def put(self, key, value) -> None:
        entry = (*value, self.today)
        self.entries[key] = entry
        self.changed[key] = entry

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, text in ((".gitignore", MARKER), ("CACHEDIR.TAG", CACHEDIR_TAG)):
                if not (self.folder / name).exists():
                    (self.folder / name).write_text(text)
            with _Lock(self.folder / ".lock"):
                entries = self._load()  # what other processes saved meanwhile
                entries.update(self.changed)
                if len(entries) > MAX_ENTRIES:
                    keep = sorted(entries.items(), key=lambda item: item[1][3], reverse=True)[:MAX_ENTRIES]
                    entries = dict(keep)
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".results-", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        pickle.dump({"tool": self.tool, "entries": entries}, handle,
                                    protocol=pickle.HIGHEST_PROTOCOL)
                    os.replace(tmp, self.path)
                except BaseException:
                    os.unlink(tmp)
                    raise
        except OSError:
            pass  # a cache that cannot be written only costs time


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
        self.settings: dict[int, tuple] = {}
        self.hits = 0

    def folder_for(self, config) -> Path:
        return self.folder or config.root_path / DEFAULT_DIR

    def entry(self, absolute: str, config, prefilter: bool, st: os.stat_result, trust_before: float) -> Entry:
        known = self.settings.get(id(config))
        if known is None or known[0] is not config:
            settings = hashlib.blake2b(f"{config.fingerprint()}\0{prefilter}".encode(),
                                       digest_size=8).hexdigest()
            known = self.settings[id(config)] = (config, settings, self._cache(self.folder_for(config)))
        _, settings, cache = known
        return _CountingEntry(self, cache, (absolute, settings), st, trust_before)

    def _cache(self, folder: Path) -> Cache:
        if folder not in self.caches:
            self.caches[folder] = Cache(folder, self.tool)
        return self.caches[folder]

    def save(self) -> None:
        for cache in self.caches.values():
            cache.save()


class _CountingEntry(Entry):
    __slots__ = ("owner",)

    def __init__(self, owner: Caches, *args):
        super().__init__(*args)
        self.owner = owner

    def by_stat(self):
        result = super().by_stat()
        self.owner.hits += result is not None
        return result

    def by_content(self, data: bytes):
        result = super().by_content(data)
        self.owner.hits += result is not None
        return result


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
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

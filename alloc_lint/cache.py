"""Results cache: per file, keyed by content, tool version and configuration.

One pickle per (version, configuration) in the cache folder. A file whose
size and modification time are unchanged is trusted to hold the content it
was hashed with (as git's index does), so a warm run reads no source file.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

from . import __version__

DEFAULT_DIR = ".alloc_lint_cache"


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _tool_fingerprint() -> str:
    """The version, and the rules' own code: results of an edited checkout
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


class Cache:
    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        self.folder = Path(folder)
        key = hashlib.blake2b(f"{_tool_fingerprint()}\0{fingerprint}".encode(), digest_size=8).hexdigest()
        self.path = self.folder / f"results-{__version__}-{key}.pickle"
        self.entries: dict[str, tuple] = {}
        self.dirty = False
        try:
            with open(self.path, "rb") as handle:
                self.entries = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError):
            self.entries = {}  # missing or unreadable: start afresh

    @staticmethod
    def stat_key(path: str):
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def lookup(self, path: str, stat_key) -> tuple | None:
        entry = self.entries.get(os.path.abspath(path))
        if entry and entry[0] == stat_key:
            return entry[2]
        return None

    def store(self, path: str, stat_key, digest: str, result: tuple) -> None:
        self.entries[os.path.abspath(path)] = (stat_key, digest, result)
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            ignore = self.folder / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# Created by alloc-lint\n*\n")
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".results-", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(self.entries, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time

"""Which files a run checks.

Named files are checked when they are Python (`*.py`, `*.pyi`, or a `python`
shebang); anything else named is skipped with a warning that says so. Folders
are walked for `*.py` and `*.pyi`, skipping excluded names (patterns anchored
at the governing configuration's folder), files that `.gitignore` ignores
inside a git work tree (`respect_gitignore`), symlinked folders (which could
loop) and special files. With `force_exclude`, excludes apply to named paths
too, as pre-commit names every file. A file reached twice is yielded once.
"""
from __future__ import annotations

import os
from pathlib import Path

from .config import Config, Resolver
from .diagnostics import FileError

PYTHON_SUFFIXES = (".py", ".pyi")


def looks_like_python(path: str) -> bool:
    if path.endswith(PYTHON_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            first = handle.readline(200)
    except OSError:
        return True  # let the reader report why it cannot be read
    return first.startswith(b"#!") and b"python" in first


class GitIgnore:
    """`.gitignore` files (and `.git/info/exclude`) from the top of the git
    work tree down, matched with pathspec's implementation of git's rules."""

    def __init__(self):
        import pathspec

        self._pathspec = pathspec
        self._specs: dict[Path, object] = {}  # folder -> its own spec or None
        self._tops: dict[Path, Path | None] = {}

    def _spec(self, folder: Path, top: Path):
        if folder not in self._specs:
            lines = []
            sources = [folder / ".gitignore"]
            if folder == top:
                sources.insert(0, folder / ".git" / "info" / "exclude")
            for source in sources:
                try:
                    lines += source.read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    pass
            lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
            self._specs[folder] = self._pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[folder]

    def top(self, folder: Path) -> Path | None:
        """The git work tree holding `folder`, or None."""
        chain, current = [], folder
        while True:
            if current in self._tops:
                result = self._tops[current]
                break
            chain.append(current)
            if (current / ".git").exists():
                result = current
                break
            if current.parent == current:
                result = None
                break
            current = current.parent
        for f in chain:
            self._tops[f] = result
        return result

    def chain(self, folder: Path) -> list:
        """(folder, spec) for every ignore file that applies inside `folder`."""
        top = self.top(folder)
        if top is None:
            return []
        found = []
        for f in [*reversed(folder.relative_to(top).parents), folder.relative_to(top)]:
            here = top / f
            spec = self._spec(here, top)
            if spec is not None:
                found.append((here, spec))
        return found

    @staticmethod
    def ignored(chain: list, path: Path, is_dir: bool) -> bool:
        # The deepest ignore file that has a say decides; within one, the last match.
        for base, spec in reversed(chain):
            rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
            verdict = spec.check_file(rel).include
            if verdict is not None:
                return verdict
        return False


def iter_files(paths, resolver: Resolver, force_exclude: bool = False, respect_gitignore: bool = True):
    """Yield (path, config, None) for each file to check, (path, None,
    FileError) for each problem or skipped path."""
    seen = set()
    gitignore = GitIgnore() if respect_gitignore else None
    for path, config, error in _iter_files(paths, resolver, force_exclude, gitignore):
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            yield path, config, error


def _iter_files(paths, resolver: Resolver, force_exclude: bool, gitignore: GitIgnore | None):
    for given in paths:
        if not os.path.lexists(given):
            yield given, None, FileError(given, "no such file or directory")
            continue
        is_dir = os.path.isdir(given)
        config = resolver.for_folder(given) if is_dir else resolver.for_file(given)
        if force_exclude and config.is_excluded(given, whole_path=True):
            continue  # silently, as Ruff does: pre-commit names excluded files on purpose
        if not is_dir:
            if looks_like_python(given):
                yield given, config, None
            else:
                yield given, None, FileError(given, "skipped: not a Python file (*.py, *.pyi or a python "
                                                    "shebang)", warning=True)
            continue
        yield from _walk(given, resolver, gitignore)


def _walk(given: str, resolver: Resolver, gitignore: GitIgnore | None):
    errors = []

    def onerror(exc):
        errors.append(FileError(exc.filename or given, f"cannot read directory: {exc.strerror or exc}"))

    found_any = False
    chains: dict[str, list] = {}
    for root, dirs, files in os.walk(given, onerror=onerror):
        config: Config = resolver.for_folder(root)
        absolute = Path(os.path.abspath(root))
        chain = []
        if gitignore is not None:
            parent = chains.get(os.path.dirname(os.path.normpath(root)))
            if parent is None:
                chain = gitignore.chain(absolute)
            else:
                spec = gitignore._spec(absolute, gitignore.top(absolute))
                chain = parent + [(absolute, spec)] if spec is not None else parent
            chains[os.path.normpath(root)] = chain

        def skipped(name: str, is_dir: bool) -> bool:
            if config.is_excluded(os.path.join(root, name)):
                return True
            return bool(chain) and GitIgnore.ignored(chain, absolute / name, is_dir)

        dirs[:] = sorted(d for d in dirs
                         if not os.path.islink(os.path.join(root, d)) and not skipped(d, True))
        for name in sorted(files):
            if name.endswith(PYTHON_SUFFIXES) and not skipped(name, False):
                found_any = True
                yield str(Path(root, name)), config, None
    for error in errors:
        yield error.filename, None, error
    if not found_any and not errors:
        yield given, None, FileError(given, "no Python files found", warning=True)

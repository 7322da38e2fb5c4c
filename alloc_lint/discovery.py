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

from .config import Resolver
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
            if lines:
                import pathspec  # only when there is something to match

                self._specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines)
            else:
                self._specs[folder] = None
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
    for path, config, error, _ in iter_files_absolute(paths, resolver, force_exclude, respect_gitignore):
        yield path, config, error


def iter_files_absolute(paths, resolver: Resolver, force_exclude: bool = False, respect_gitignore: bool = True):
    """As iter_files, with each file's absolute path last (None for errors)."""
    seen = set()
    gitignore = GitIgnore() if respect_gitignore else None
    for path, config, error, absolute in _iter_files(paths, resolver, force_exclude, gitignore):
        key = os.path.normcase(absolute or os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            yield path, config, error, absolute


def _iter_files(paths, resolver: Resolver, force_exclude: bool, gitignore: GitIgnore | None):
    for given in paths:
        if not os.path.lexists(given):
            yield given, None, FileError(given, "no such file or directory"), None
            continue
        is_dir = os.path.isdir(given)
        config = resolver.for_folder(given) if is_dir else resolver.for_file(given)
        if force_exclude and config.is_excluded(given, whole_path=True):
            continue  # silently, as Ruff does: pre-commit names excluded files on purpose
        if not is_dir:
            if looks_like_python(given):
                yield given, config, None, os.path.abspath(given)
            else:
                yield given, None, FileError(given, "skipped: not a Python file (*.py, *.pyi or a python "
                                                    "shebang)", warning=True), None
            continue
        yield from _walk(given, resolver, gitignore)


def _walk(given: str, resolver: Resolver, gitignore: GitIgnore | None):
    """Walk one folder. Each folder's configuration, path from the project
    root and git work tree derive from its parent's (a folder is looked at
    only for a pyproject.toml or .git of its own), so a walk costs little
    more than os.walk itself."""
    errors = []

    def onerror(exc):
        errors.append(FileError(exc.filename or given, f"cannot read directory: {exc.strerror or exc}"))

    found_any = False
    state: dict[str, tuple] = {}  # folder -> (config, prefix from the root, absolute path, git top, ignore chain)
    # os.walk lists symlinked folders but does not descend into them (followlinks=False).
    for root, dirs, files in os.walk(given, onerror=onerror):
        key = os.path.normpath(root)
        parent = state.get(os.path.dirname(key) or os.curdir) if key != os.path.normpath(given) else None
        if parent is None:
            absolute = os.path.abspath(root)
            config = resolver.for_folder(absolute)
            rel_root = config.relative(absolute)
            prefix = "" if rel_root == "." else rel_root + "/"
            top = gitignore.top(Path(absolute)) if gitignore is not None else None
            chain = gitignore.chain(Path(absolute)) if top is not None else []
        else:
            p_config, p_prefix, p_absolute, top, chain = parent
            name = os.path.basename(key)
            absolute = p_absolute + os.sep + name
            config = resolver.for_child(absolute, p_config, "pyproject.toml" in files,
                                        ".git" in dirs or ".git" in files)
            prefix = p_prefix + name + "/" if config is p_config else (
                "" if config.relative(absolute) == "." else config.relative(absolute) + "/")
            if gitignore is not None:
                new_top = ".git" in dirs or ".git" in files  # a nested repository has its own rules
                if new_top:
                    top, chain = Path(absolute), []
                if top is not None and (new_top or ".gitignore" in files):
                    spec = gitignore._spec(Path(absolute), top)
                    if spec is not None:
                        chain = chain + [(Path(absolute), spec)]
        state[key] = (config, prefix, absolute, top, chain)
        excluded = config.excluder

        def skipped(name: str, is_dir: bool) -> bool:
            if excluded(prefix + name):
                return True
            return bool(chain) and GitIgnore.ignored(chain, Path(absolute, name), is_dir)

        dirs[:] = sorted(d for d in dirs if not skipped(d, True))
        base = "" if key == "." else key + os.sep
        for name in sorted(files):
            if name.endswith(PYTHON_SUFFIXES) and not skipped(name, False):
                found_any = True
                yield base + name, config, None, absolute + os.sep + name
    for error in errors:
        yield error.filename, None, error, None
    if not found_any and not errors:
        yield given, None, FileError(given, "no Python files found", warning=True), None

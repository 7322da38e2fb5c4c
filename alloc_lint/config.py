"""`[tool.alloc-lint]` configuration, resolved per file.

A file is governed by the nearest `pyproject.toml` above it that has a
`[tool.alloc-lint]` table (as Ruff and Fixit do), unless `--config` names one
file for all. Exclude patterns and `per-file-ignores` are anchored at that
file's folder, the project root; without a configuration the root is the
nearest folder holding a `pyproject.toml` or `.git`, else the working folder.

    config.for_file(path) -> Config     # what the LSP server calls
    Resolver(config_file, select=..., ignore=...).for_file(path)   # the CLI
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .selectors import SelectorError, matches, parse_list, suggestion


def _toml():
    """tomllib, imported when a pyproject.toml is read (most runs read none or one)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


DEFAULT_ALLOCATORS = ("torch.empty_like",)
# Out-parameter kernels that merge attention states: any keyword may carry the
# temporary into these (other calls need a positional or `out`-like keyword).
DEFAULT_MERGE_FUNCTIONS = (
    "merge_attn_states",
    "merge_state",
    "merge_state_v2",
    "merge_states",
)
DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__",
    "build", "dist", "node_modules", ".mypy_cache", ".ruff_cache", ".eggs",
    ".alloc_lint_cache",
)
DEFAULT_LINE_LENGTH = 88  # ruff's and black's default
KEYS = ("extra-allocators", "extra-merge-functions", "exclude", "extend-exclude", "select", "ignore",
        "per-file-ignores")
TABLE = "alloc-lint"


class ConfigError(Exception):
    pass


@dataclass
class Config:
    allocators: tuple[str, ...] = DEFAULT_ALLOCATORS
    merge_functions: tuple[str, ...] = DEFAULT_MERGE_FUNCTIONS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    select: tuple[str, ...] = ("ALC",)  # canonical code prefixes ("" is ALL)
    ignore: tuple[str, ...] = ()
    # (glob, code prefixes): findings of those codes are dropped in matching files
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    source: str | None = None  # the file it came from
    root: str | None = None  # the folder patterns are anchored at (None: the working folder)
    # Fixes wrap lines they write beyond this (`line-length` of [tool.ruff] or [tool.black]).
    line_length: int = DEFAULT_LINE_LENGTH

    # Fields that do not change what a file's check returns (the cache key skips them).
    NOT_RESULTS = ("exclude", "source", "line_length")

    def fingerprint(self) -> str:
        """What a cached result depends on: every field but excludes and the
        source's name, so a field added later is in the key by default."""
        return repr(tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                          if f.name not in self.NOT_RESULTS))

    def is_selected(self, code: str, name: str = "") -> bool:
        return matches(code, self.select) and not matches(code, self.ignore)

    @property
    def root_path(self) -> Path:
        return Path(self.root) if self.root else Path.cwd()

    def relative(self, path: str | os.PathLike) -> str:
        """`path` relative to the root, with `/`; absolute if outside it."""
        absolute = os.path.abspath(path)
        rel = os.path.relpath(absolute, self.root or os.getcwd())
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            rel = absolute
        return rel.replace(os.sep, "/")

    def ignored_codes(self, path: str) -> tuple[str, ...]:
        """Code prefixes that `per-file-ignores` drops for this file."""
        if not self.per_file_ignores:
            return ()
        rel = self.relative(path)
        name = rel.rsplit("/", 1)[-1]
        found = []
        for pattern, prefixes in self.per_file_ignores:
            target = rel if "/" in pattern else name
            if fnmatch.fnmatchcase(target, pattern):
                found.extend(prefixes)
        return tuple(found)

    @cached_property
    def excluder(self) -> "Excluder":
        return Excluder(self.exclude)

    def is_excluded(self, path: str | os.PathLike, whole_path: bool = False) -> bool:
        """Whether an exclude pattern matches `path` (its last component only,
        as a folder walk meets it, or with `whole_path` every folder above it
        up to the root too, as `--force-exclude` wants for named files)."""
        return self.excluder(self.relative(path), whole_path)


class Excluder:
    """Exclude patterns compiled once: a pattern without `/` matches any one
    path component (`build`, `*_pb2.py`); one with `/` matches the path
    relative to the project root (`src/gen`, `src/*/generated`)."""

    def __init__(self, patterns: tuple[str, ...]):
        def compile_(items):
            return re.compile("|".join(fnmatch.translate(p) for p in items)) if items else None

        cleaned = [p.strip().rstrip("/").removeprefix("./") for p in patterns if p.strip()]
        self.name = compile_([p for p in cleaned if "/" not in p])
        self.path = compile_([p for p in cleaned if "/" in p])

    def __call__(self, rel: str, whole_path: bool = False) -> bool:
        if not whole_path:  # a walk: one new name (the common case, once per file)
            if self.name is not None and self.name.match(rel.rpartition("/")[2]):
                return True
            return self.path is not None and self.path.match(rel) is not None
        parts = rel.split("/")
        if self.name and any(self.name.match(n) for n in parts):
            return True
        if not self.path:
            return False
        return any(self.path.match("/".join(parts[:i])) for i in range(1, len(parts) + 1))


def _str_list(table: dict, key: str, where: str) -> tuple[str, ...] | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings")
    return tuple(value)


def _selectors(values, where: str, key: str) -> tuple[str, ...]:
    try:
        return parse_list(values, f"`{key}`")
    except SelectorError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def from_table(table: dict, where: str, root: str | None = None) -> Config:
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{where}: unknown key `{key}` in [tool.{TABLE}]{suggestion(key, KEYS)} "
                          f"(valid keys: {', '.join(KEYS)})")
    cfg = Config(source=where, root=root)
    extra = _str_list(table, "extra-allocators", where)
    if extra:
        cfg.allocators = DEFAULT_ALLOCATORS + extra
    extra = _str_list(table, "extra-merge-functions", where)
    if extra:
        cfg.merge_functions = DEFAULT_MERGE_FUNCTIONS + extra
    exclude = _str_list(table, "exclude", where)
    if exclude is not None:
        cfg.exclude = exclude
    extend = _str_list(table, "extend-exclude", where)
    if extend:
        cfg.exclude = cfg.exclude + extend
    for key in ("select", "ignore"):
        value = _str_list(table, key, where)
        if value is not None:
            setattr(cfg, key, _selectors(value, where, key))
    per_file = table.get("per-file-ignores", {})
    if not isinstance(per_file, dict):
        raise ConfigError(f"{where}: `per-file-ignores` must be a table of glob = [codes]")
    cfg.per_file_ignores = tuple(
        (pattern.strip().removeprefix("./"),
         _selectors(_str_list(per_file, pattern, where), where, f"per-file-ignores.{pattern}"))
        for pattern in per_file)
    return cfg


def _read_toml(path: Path) -> dict:
    try:
        return _toml().loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except (_toml().TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _table(data: dict, path: Path, dedicated: bool) -> dict | None:
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        tool = {}
    if "alloc_lint" in tool:
        raise ConfigError(f"{path}: `[tool.alloc_lint]` is not read: the table is `[tool.{TABLE}]` (with a dash)")
    if TABLE in tool:
        table = tool[TABLE]
    elif dedicated:  # a file of its own may hold the keys at top level
        table = {k: v for k, v in data.items() if k != "tool"}
    else:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.{TABLE}] must be a table")
    return table


def load(path: str | Path) -> Config:
    """The configuration in one file: a pyproject.toml, or a TOML file of its
    own (keys at top level or under [tool.alloc-lint])."""
    path = Path(path)
    data = _read_toml(path)
    table = _table(data, path, dedicated=path.name != "pyproject.toml")
    cfg = from_table(table or {}, str(path), root=str(path.resolve().parent))
    cfg.line_length = formatter_line_length(data) or _line_length_in(path.resolve().parent)
    return cfg


def formatter_line_length(data: dict) -> int | None:
    """`line-length` of [tool.ruff], else of [tool.black], in a pyproject.toml's data."""
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    for table in (tool.get("ruff"), tool.get("black")):
        value = table.get("line-length") if isinstance(table, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _line_length_in(folder) -> int:
    """The formatter line length of folder/pyproject.toml, else the default."""
    try:
        text = (Path(folder) / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return DEFAULT_LINE_LENGTH
    if "line-length" not in text:
        return DEFAULT_LINE_LENGTH
    toml = _toml()
    try:
        return formatter_line_length(toml.loads(text)) or DEFAULT_LINE_LENGTH
    except toml.TOMLDecodeError:
        return DEFAULT_LINE_LENGTH


def _pyproject_config(folder: Path) -> Config | None:
    """The configuration in folder/pyproject.toml, if it has our table."""
    candidate = folder / "pyproject.toml"
    try:
        text = candidate.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:  # there, but unreadable: it may hold our table, so never skip it silently
        raise ConfigError(f"{candidate}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{candidate}: cannot read config: not UTF-8 ({exc.reason})") from None
    if "alloc-lint" not in text and "alloc_lint" not in text:
        return None
    try:
        data = _toml().loads(text)
    except _toml().TOMLDecodeError as exc:
        raise ConfigError(f"{candidate}: invalid TOML: {exc}") from None
    table = _table(data, candidate, dedicated=False)
    if table is None:
        return None
    cfg = from_table(table, str(candidate), root=str(folder))
    cfg.line_length = formatter_line_length(data) or DEFAULT_LINE_LENGTH
    return cfg


class Resolver:
    """Configuration per file for one run: the `--config` file or the nearest
    pyproject.toml with our table, then command-line overrides. Folders are
    looked up once each."""

    def __init__(self, config_file: str | None = None, select=None, ignore=None):
        # As Ruff: `--select` on the command line replaces the configured
        # selection, `ignore` included (`--select F401` enforces F401 and no other).
        if select is not None and ignore is None:
            ignore = ()
        self.overrides = {k: v for k, v in (("select", select), ("ignore", ignore)) if v is not None}
        self.fixed = self._apply(load(config_file)) if config_file else None
        self._found: dict[str, Config | None] = {}  # folder -> governing config, None: none
        self._marker: dict[str, str | None] = {}  # folder -> nearest project marker
        self._defaults: dict[str, Config] = {}
        self._folders: dict[str, Config] = {}  # folder as given -> answer

    def _apply(self, cfg: Config) -> Config:
        return dataclasses.replace(cfg, **self.overrides) if self.overrides else cfg

    def for_file(self, path: str | os.PathLike) -> Config:
        return self.for_folder(os.path.dirname(os.path.abspath(path)))

    def for_folder(self, folder: str | os.PathLike) -> Config:
        if self.fixed is not None:
            return self.fixed
        folder = os.fspath(folder)
        known = self._folders.get(folder)
        if known is not None:
            return known
        absolute = os.path.abspath(folder)
        found = self._governing(absolute)
        if found is None:
            root = self._nearest_marker(absolute) or os.getcwd()
            if root not in self._defaults:
                self._defaults[root] = self._apply(Config(root=root, line_length=_line_length_in(root)))
            found = self._defaults[root]
        self._folders[folder] = found
        return found

    def for_child(self, folder: str, parent: Config, has_pyproject: bool, has_git: bool) -> Config:
        """The configuration of `folder` (absolute) met in a walk, from its
        parent's and what the folder holds: no lookups above it."""
        found = parent
        if self.fixed is not None:
            found = self.fixed
        elif has_pyproject and (cfg := _pyproject_config(Path(folder))) is not None:
            found = self._apply(cfg)
            self._found[folder] = found
        elif (has_pyproject or has_git) and parent.source is None:  # defaults, rooted at the nearest marker
            if folder not in self._defaults:
                self._defaults[folder] = self._apply(Config(root=folder, line_length=_line_length_in(folder)))
            found = self._defaults[folder]
        self._folders[folder] = found
        return found

    def _walk_up(self, folder: str, memo: dict, test):
        """The first answer of `test` from `folder` up, memoised for every folder passed."""
        chain, result, current = [], None, folder
        while True:
            if current in memo:
                result = memo[current]
                break
            chain.append(current)
            result = test(current)
            if result is not None:
                break
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
        for f in chain:
            memo[f] = result
        return result

    def _governing(self, folder: str) -> Config | None:
        def test(f):
            cfg = _pyproject_config(Path(f))
            return None if cfg is None else self._apply(cfg)

        return self._walk_up(folder, self._found, test)

    def _nearest_marker(self, folder: str) -> str | None:
        def test(f):
            marked = os.path.isfile(os.path.join(f, "pyproject.toml")) or os.path.exists(os.path.join(f, ".git"))
            return f if marked else None

        return self._walk_up(folder, self._marker, test)


def for_file(path: str | os.PathLike, config_file: str | None = None) -> Config:
    """The configuration that governs one file, read afresh (cheap: a few
    stat calls and one TOML parse), so edits to pyproject.toml are seen. For
    editors and the LSP server; raises ConfigError."""
    return Resolver(config_file).for_file(path)


def discover(start: str | Path = ".") -> Config:
    """The configuration governing a folder (kept for callers of the old name)."""
    return Resolver().for_folder(start)

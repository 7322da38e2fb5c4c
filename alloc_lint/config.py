"""`[tool.alloc-lint]` configuration from pyproject.toml."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ALLOCATORS = ("torch.empty_like",)
# Out-parameter kernels that merge attention states: any keyword may carry the
# temporary into these (other calls need a positional or `out`-like keyword).
DEFAULT_MERGE_FUNCTIONS = (
    "merge_attn_states",
    "merge_state",
    "merge_state_v2",
    "merge_states",
)
DEFAULT_LINE_LENGTH = 88  # ruff's and black's default
DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__",
    "build", "dist", "node_modules", ".mypy_cache", ".ruff_cache", ".eggs",
    ".alloc_lint_cache",
)


class ConfigError(Exception):
    pass


@dataclass
class Config:
    allocators: tuple[str, ...] = DEFAULT_ALLOCATORS
    merge_functions: tuple[str, ...] = DEFAULT_MERGE_FUNCTIONS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    select: tuple[str, ...] = ("ALC",)
    ignore: tuple[str, ...] = ()
    source: str | None = None  # the file it came from
    # Fixes wrap lines they write beyond this (`line-length` of [tool.ruff] or [tool.black]).
    line_length: int = DEFAULT_LINE_LENGTH

    def fingerprint(self) -> str:
        """What a cached result depends on."""
        return repr((self.allocators, self.merge_functions, self.select, self.ignore))

    def is_selected(self, code: str, name: str = "") -> bool:
        def matches(prefixes):
            return any(code.startswith(p) or p == name for p in prefixes)

        return matches(self.select) and not matches(self.ignore)


def _str_list(table: dict, key: str, where: str) -> tuple[str, ...] | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings")
    return tuple(value)


def from_table(table: dict, where: str) -> Config:
    known = {"extra-allocators", "extra-merge-functions", "exclude", "extend-exclude", "select", "ignore"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) in [tool.alloc-lint]: {', '.join(unknown)}")
    cfg = Config(source=where)
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
            setattr(cfg, key, tuple(v.upper() if v[:3].upper() == "ALC" else v for v in value))
    return cfg


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("alloc-lint", {})
    else:  # a dedicated file holds the table at top level, or under [tool.alloc-lint]
        table = data.get("tool", {}).get("alloc-lint", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.alloc-lint] must be a table")
    cfg = from_table(table, str(path))
    cfg.line_length = formatter_line_length(data) or DEFAULT_LINE_LENGTH
    return cfg


def formatter_line_length(data: dict) -> int | None:
    """`line-length` of [tool.ruff], else of [tool.black], in a pyproject.toml's data."""
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    for table in (tool.get("ruff"), tool.get("black")):
        value = table.get("line-length") if isinstance(table, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def discover(start: str | Path = ".") -> Config:
    """The nearest pyproject.toml with a [tool.alloc-lint] table, else defaults."""
    here = Path(start).resolve()
    line_length = None  # the nearest pyproject.toml's, where none configures alloc-lint
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if "alloc-lint" in text:
                cfg = load(candidate)
                if cfg.source:
                    return cfg
            if line_length is None and "line-length" in text:
                try:
                    line_length = formatter_line_length(tomllib.loads(text))
                except tomllib.TOMLDecodeError:
                    pass
    return Config(line_length=line_length or DEFAULT_LINE_LENGTH)

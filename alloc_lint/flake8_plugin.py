"""flake8 adapter: the same engine on flake8's own `ast` tree, so files that
cannot match cost one substring search. flake8 applies `noqa` itself.

Each file gets the configuration that `alloc-lint check` gives it (the nearest
pyproject.toml with [tool.alloc-lint]: allocators, merge functions, select,
ignore, per-file-ignores, the file-level `# alloc-lint: noqa`), so both report
the same findings. A configuration error is never silent: it stops flake8 with
the message when it governs a path named on the command line, and is reported
as `ALC000` at line 1 of each file it governs otherwise. flake8's own --select
and --ignore must name existing ALC codes or prefixes."""
from __future__ import annotations

import os

from . import __version__, engine, selectors
from .config import ConfigError, Resolver

CONFIG_ERROR = "ALC000"
_resolver = None


def _config_for(filename: str):
    global _resolver
    if _resolver is None:
        _resolver = Resolver()
    return _resolver.for_file(filename)


def _flake8_error(message: str):
    from flake8.exceptions import ExecutionError

    return ExecutionError(f"alloc-lint: {message}")


class AllocLintFlake8:
    name = "alloc-lint"
    version = __version__

    def __init__(self, tree, lines, filename="<unknown>"):
        self.tree = tree
        self.lines = lines
        self.filename = filename

    @classmethod
    def parse_options(cls, options) -> None:
        """Refuse ALC selectors that name no rule, and a broken configuration
        for the paths flake8 was given, before any file is checked."""
        valid = selectors.valid_selectors()
        for option in ("select", "extend_select", "ignore", "extend_ignore"):
            for value in getattr(options, option, None) or ():
                if value.upper().startswith("ALC") and value != CONFIG_ERROR and value.upper() not in valid:
                    flag = "--" + option.replace("_", "-")
                    raise _flake8_error(f"Unknown rule selector `{value}` in {flag}"
                                        f"{selectors.selector_hint(value)}")
        for path in getattr(options, "filenames", None) or ["."]:
            try:
                if os.path.isdir(path):
                    Resolver().for_folder(path)
                elif path != "-":
                    Resolver().for_file(path)
            except ConfigError as exc:
                raise _flake8_error(str(exc)) from None

    def run(self):
        try:
            config = _config_for(self.filename)
        except ConfigError as exc:
            yield 1, 0, f"{CONFIG_ERROR} alloc-lint configuration error: {exc}", type(self)
            return
        text = "".join(self.lines)
        if not engine.might_match(text, config):
            return
        found = engine.check_tree(self.tree, text, self.filename, config)
        if not found:
            return
        dropped = (engine.file_suppressions(text) or ()) + config.ignored_codes(self.filename)
        # flake8 reads `# noqa` on the reported line only (bracketed continuation
        # lines are lines of their own); `alloc-lint check` on any line of the
        # statement: the same here.
        spans = engine.logical_lines(text) if "noqa" in text.lower() else {}
        for d in found:
            if any(engine.is_suppressed(self.lines[n - 1], d.code) for n in range(*spans.get(d.line, (0, 0)))
                   if 0 < n <= len(self.lines)):
                continue
            if not selectors.matches(d.code, dropped):
                # flake8 columns are 0-based and shown +1: the same column as `alloc-lint check`.
                yield d.line, d.column - 1, f"{d.code} {d.message}", type(self)

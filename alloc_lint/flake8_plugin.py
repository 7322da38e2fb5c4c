"""flake8 adapter: the same engine on flake8's own `ast` tree, so files that
cannot match cost one substring search. flake8 applies `noqa` itself."""
from __future__ import annotations

from functools import lru_cache

from . import __version__, engine
from .config import Config, ConfigError, discover


@lru_cache(maxsize=1)
def _config() -> Config:
    try:
        config = discover(".")
    except ConfigError:
        config = Config()  # flake8 has no channel for it; `alloc-lint check` reports it
    config.select = ("ALC",)  # flake8's --select/--ignore decide what is shown
    config.ignore = ()
    return config


class AllocLintFlake8:
    name = "alloc-lint"
    version = __version__

    def __init__(self, tree, lines, filename="<unknown>"):
        self.tree = tree
        self.lines = lines
        self.filename = filename

    def run(self):
        config = _config()
        text = "".join(self.lines)
        if not engine.might_match(text, config):
            return
        for d in engine.check_tree(self.tree, text, self.filename, config):
            # flake8 columns are 0-based and shown +1: the same column as `alloc-lint check`.
            yield d.line, d.column - 1, f"{d.code} {d.message}", type(self)

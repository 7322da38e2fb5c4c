"""What every rule gets, and what it must provide."""
from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from functools import cached_property

from ..analysis.names import Resolver
from ..analysis.scopes import ModuleIndex
from ..config import Config
from ..diagnostics import Diagnostic
from ..lines import char_column, split_lines


@dataclass
class FileContext:
    filename: str
    text: str
    tree: ast.Module
    config: Config
    resolver: Resolver = field(default_factory=Resolver)

    @cached_property
    def index(self) -> ModuleIndex:
        return ModuleIndex(self.tree)

    @cached_property
    def lines(self) -> list[str]:
        return split_lines(self.text)

    def char_column(self, lineno: int, byte_col: int) -> int:
        line = self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""
        return char_column(line, byte_col)


class Rule:
    code: str = ""
    name: str = ""
    summary: str = ""
    fix_availability: str = "never"  # "always" | "sometimes" | "never" (shown by `alloc-lint rules`)
    options: tuple[str, ...] = ()  # configuration keys that change what the rule finds (its page's Options)

    def check(self, ctx: FileContext) -> list[Diagnostic]:
        raise NotImplementedError

    def might_match(self, text: str, config: Config) -> bool:
        """A sound text test: False only when `check` provably reports nothing
        for this text under this configuration. The engine parses a file only
        when some selected rule's test holds. The default keeps every file."""
        return True

    @classmethod
    def documentation(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

"""The data a check produces: diagnostics, and the fixes they carry."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Edit:
    """Replace lines [start_line, end_line) of the original text with `content`.

    Lines are 1-based. An insertion has start_line == end_line. Line-level
    edits keep every other byte of the file as it was, and map directly onto
    SARIF `replacements` and Ruff-style JSON edits.
    """

    start_line: int
    end_line: int
    content: str


@dataclass
class Fix:
    applicability: str  # "safe" | "unsafe"
    message: str
    form: str  # the rule's name for the shape of the rewrite ("swap", "pingpong", ...)
    # What the fix does: alloc_lint.edits operations on the checked text (data:
    # cached, pickled, turned into edits without the rule's syntax trees).
    operations: tuple = field(default=(), repr=False)
    edits: list[Edit] | None = None  # filled in for JSON/SARIF by api.attach_edits


@dataclass
class Diagnostic:
    code: str
    name: str
    filename: str
    line: int
    column: int  # 1-based, in characters
    end_line: int
    end_column: int  # 1-based, exclusive
    message: str
    # Fixes in order of preference: an unsafe fix may precede the safe one it
    # would replace when unsafe fixes are enabled.
    fixes: list[Fix] = field(default_factory=list)
    no_fix_reason: str | None = None

    def fix_for(self, unsafe_fixes: bool) -> Fix | None:
        """The fix `alloc-lint fix` would apply under these settings."""
        for fix in self.fixes:
            if fix.applicability == "safe" or unsafe_fixes:
                return fix
        return None

    def held_back_fix(self) -> Fix | None:
        """An unsafe fix preferred over what safe mode applies, if any."""
        if self.fixes and self.fixes[0].applicability == "unsafe":
            return self.fixes[0]
        return None

    def sort_key(self):
        return (self.filename, self.line, self.column, self.code)


@dataclass
class FileError:
    filename: str
    message: str
    warning: bool = False  # reported, but does not fail the run
    line: int | None = None  # 1-based, when the problem has a place (syntax errors)
    column: int | None = None  # 1-based, in characters

    @property
    def where(self) -> str:
        """`path:line:column` (or `path`), as editors and terminals jump to."""
        if self.line is None:
            return self.filename
        return f"{self.filename}:{self.line}:{self.column or 1}"

    def __str__(self) -> str:
        return f"{self.where}: {'warning' if self.warning else 'error'}: {self.message}"

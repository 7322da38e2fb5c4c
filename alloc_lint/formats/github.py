"""GitHub Actions workflow commands: annotations on the pull request's diff."""
from __future__ import annotations


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def render(diagnostics, errors, unsafe_fixes: bool = False, **_) -> str:
    out = []
    for d in diagnostics:
        out.append(
            f"::warning file={_prop(d.filename)},line={d.line},col={d.column},"
            f"endLine={d.end_line},endColumn={d.end_column},title={d.code} ({d.name})::"
            f"{_data(f'{d.code} {d.message}')}"
        )
    for e in errors:
        level = "warning" if e.warning else "error"
        place = f",line={e.line},col={e.column or 1}" if e.line is not None else ""
        out.append(f"::{level} file={_prop(e.filename)}{place},title=alloc-lint::{_data(e.message)}")
    return "\n".join(out) + ("\n" if out else "")

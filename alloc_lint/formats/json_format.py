"""One JSON array, readable by tools that read Ruff's `--output-format json`:
each element has Ruff's keys (`code`, `message`, `filename`, `location` and
`end_location` as `{"row", "column"}`, `fix` with `applicability`, `message`
and `edits`, `noqa_row`, `url`, `cell`) and ours (`name`, `line`, `column`,
`end_line`, `end_column`, `fixes`, `no_fix_reason`, `level`).

Files that could not be read or parsed are elements too, as Ruff reports a
syntax error: `code` and `name` null, `level` "error", the message, and the
position of the error (line 1, column 1 when it has none). Warnings (a path
skipped, a folder without Python files) stay on stderr.
"""
from __future__ import annotations

import json


def _edit(e) -> dict:
    return {"content": e.content,
            "location": {"row": e.start_line, "column": 1},
            "end_location": {"row": e.end_line, "column": 1}}


def fix_object(fix) -> dict:
    return {
        "applicability": fix.applicability,
        "message": fix.message,
        "form": fix.form,
        "edits": [_edit(e) for e in (fix.edits or [])],
    }


def diagnostic_object(d, unsafe_fixes: bool = False) -> dict:
    fix = d.fix_for(unsafe_fixes) or (d.fixes[0] if d.fixes else None)
    return {
        "code": d.code,
        "name": d.name,
        "level": "warning",
        "filename": d.filename,
        "line": d.line,
        "column": d.column,
        "end_line": d.end_line,
        "end_column": d.end_column,
        "location": {"row": d.line, "column": d.column},
        "end_location": {"row": d.end_line, "column": d.end_column},
        "message": d.message,
        "fix": fix_object(fix) if fix else None,
        "fixes": [fix_object(f) for f in d.fixes],
        "no_fix_reason": d.no_fix_reason,
        "noqa_row": d.line,
        "url": None,  # no documentation site yet: `alloc-lint explain CODE` prints the page
        "cell": None,
    }


def error_object(e) -> dict:
    line, column = e.line or 1, e.column or 1
    return {
        "code": None,
        "name": None,
        "level": "error",
        "filename": e.filename,
        "line": line,
        "column": column,
        "end_line": line,
        "end_column": column,
        "location": {"row": line, "column": column},
        "end_location": {"row": line, "column": column},
        "message": e.message,
        "fix": None,
        "fixes": [],
        "no_fix_reason": None,
        "noqa_row": None,
        "url": None,
        "cell": None,
    }


def render(diagnostics, errors, unsafe_fixes: bool = False, **_) -> str:
    items = [diagnostic_object(d, unsafe_fixes) for d in diagnostics]
    items += [error_object(e) for e in errors if not e.warning]
    items.sort(key=lambda item: (item["filename"], item["line"], item["column"], item["code"] or ""))
    return json.dumps(items, indent=2) + "\n"

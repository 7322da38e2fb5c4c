"""One JSON array; every element has the fields DESIGN.md section 4 promises."""
from __future__ import annotations

import json


def fix_object(fix) -> dict:
    return {
        "applicability": fix.applicability,
        "message": fix.message,
        "form": fix.form,
        "edits": [
            {"content": e.content,
             "location": {"row": e.start_line, "column": 1},
             "end_location": {"row": e.end_line, "column": 1}}
            for e in (fix.edits or [])
        ],
    }


def diagnostic_object(d, unsafe_fixes: bool = False) -> dict:
    fix = d.fix_for(unsafe_fixes) or (d.fixes[0] if d.fixes else None)
    return {
        "code": d.code,
        "name": d.name,
        "filename": d.filename,
        "line": d.line,
        "column": d.column,
        "end_line": d.end_line,
        "end_column": d.end_column,
        "message": d.message,
        "fix": fix_object(fix) if fix else None,
        "fixes": [fix_object(f) for f in d.fixes],
        "no_fix_reason": d.no_fix_reason,
    }


def render(diagnostics, errors, unsafe_fixes: bool = False) -> str:
    return json.dumps([diagnostic_object(d, unsafe_fixes) for d in diagnostics], indent=2) + "\n"

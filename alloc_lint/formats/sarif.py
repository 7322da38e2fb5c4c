"""SARIF 2.1.0, as GitHub code scanning accepts it: rules in the driver,
results with 1-based regions, fixes as artifactChanges."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(filename: str) -> dict:
    path = Path(filename)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": Path(os.path.normpath(filename)).as_posix(), "uriBaseId": "%SRCROOT%"}


def _rule(rule) -> dict:
    doc = rule.documentation()
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "help": {"text": doc, "markdown": doc},
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["performance", "pytorch"]},
    }


def _fix(d, fix) -> dict:
    return {
        "description": {"text": f"{fix.message} ({fix.applicability} fix)"},
        "artifactChanges": [{
            "artifactLocation": _uri(d.filename),
            "replacements": [{
                "deletedRegion": {"startLine": e.start_line, "startColumn": 1,
                                  "endLine": e.end_line, "endColumn": 1},
                "insertedContent": {"text": e.content},
            } for e in (fix.edits or [])],
        }],
    }


def _notification(e) -> dict:
    location = {"artifactLocation": _uri(e.filename)}
    if e.line is not None:
        location["region"] = {"startLine": e.line, "startColumn": e.column or 1}
    return {
        "level": "warning" if e.warning else "error",
        "message": {"text": e.message},
        "locations": [{"physicalLocation": location}],
    }


def render(diagnostics, errors, unsafe_fixes: bool = False, **_) -> str:
    from ..rules import ALL_RULES

    index = {rule.code: i for i, rule in enumerate(ALL_RULES)}
    results = []
    for d in diagnostics:
        result = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": "warning",
            "message": {"text": d.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": _uri(d.filename),
                "region": {"startLine": d.line, "startColumn": d.column,
                           "endLine": d.end_line, "endColumn": d.end_column},
            }}],
        }
        fixes = [_fix(d, f) for f in d.fixes if f.edits]
        if fixes:
            result["fixes"] = fixes
        results.append(result)
    log = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "alloc-lint",
                "version": __version__,
                "informationUri": "https://pypi.org/project/alloc-lint/",
                "rules": [_rule(r) for r in ALL_RULES],
            }},
            "columnKind": "unicodeCodePoints",
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
            "results": results,
            "invocations": [{
                "executionSuccessful": not any(not e.warning for e in errors),
                "toolExecutionNotifications": [_notification(e) for e in errors],
            }],
        }],
    }
    return json.dumps(log, indent=2) + "\n"

"""`alloc-lint check --add-noqa`: append `# noqa: CODE` to each line with a
finding, merging with a `# noqa: ...` already there, so a legacy codebase can
adopt the tool and see only new findings."""
from __future__ import annotations

import io
import re
import tokenize

from . import engine
from .api import write_atomically
from .lines import split_lines

_EXISTING = re.compile(r"#\s*noqa:\s?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*)", re.IGNORECASE)


def _unsafe_lines(text: str) -> tuple[set[int], dict[int, int]]:
    """Lines whose end is inside a string (a comment there would change the
    string) or that continue with a backslash (a comment is a syntax error);
    and where each line's comment starts (a `# noqa:` elsewhere is in a string)."""
    bad, comments = set(), {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING or getattr(tokenize, "FSTRING_MIDDLE", None) == tok.type:
                bad.update(range(tok.start[0], tok.end[0]))
            elif tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.start[1]
    except (tokenize.TokenError, SyntaxError):
        pass
    for number, line in enumerate(split_lines(text), 1):
        if line.rstrip().endswith("\\"):
            bad.add(number)
    return bad, comments


def add_noqa(text: str, diagnostics) -> tuple[str, int, list[str]]:
    """(new text, directives added, one line per finding that could not get one)."""
    codes: dict[int, list[str]] = {}
    for d in diagnostics:
        codes.setdefault(d.line, [])
        if d.code not in codes[d.line]:
            codes[d.line].append(d.code)
    unsafe, comments = _unsafe_lines(text)
    lines = split_lines(text, keepends=True)
    added, problems = 0, []
    for number, wanted in sorted(codes.items()):
        if not 0 < number <= len(lines):
            continue
        if number in unsafe:
            problems.append(f"{diagnostics[0].filename}:{number}: warning: no noqa added: the line ends inside a "
                            "string or continues with a backslash")
            continue
        raw = lines[number - 1]
        body = raw.rstrip("\r\n")
        ending = raw[len(body):]
        existing = _EXISTING.search(body, comments[number]) if number in comments else None
        if existing:
            old = [c for c in re.split(r"[,\s]+", existing.group("codes")) if c]
            merged = ", ".join(old + [c for c in wanted if c.upper() not in {o.upper() for o in old}])
            body = body[:existing.start()] + f"# noqa: {merged}" + body[existing.end():]
        else:
            body = body.rstrip() + f"  # noqa: {', '.join(wanted)}"
        lines[number - 1] = body + ending
        added += 1
    return "".join(lines), added, problems


def add_noqa_to_file(path: str, diagnostics) -> tuple[int, list[str]]:
    original = engine.read_bytes(path)
    source = engine.decode(original)
    text, added, problems = add_noqa(source.text, diagnostics)
    if added:
        write_atomically(path, engine.encode(source, text), expected_old=original)
    return added, problems

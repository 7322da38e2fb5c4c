"""A text test that skips files which cannot hold an ALC001 finding, before
anything is parsed.

A finding needs (1) an allocator call, under its own name or an alias, whose
result is assigned to a name T; (2) a loop; (3) a rebinding statement whose
targets and values are plain names, one of the values being T. Each regular
expression below accepts every spelling Python allows for its part (brackets,
line continuations, comments inside brackets, spaces around dots), so a file
that fails one of them provably has no finding; files that pass are parsed.
"""
from __future__ import annotations

import re

NAME = r"[^\W\d]\w*"
# Whitespace between tokens: blanks, newlines and comments (inside brackets),
# and backslash continuations.
WS = r"(?:\s|\\\r?\n|#[^\n]*\n)*+"
_ELEMENT = rf"(?:[(\[]{WS})*+{NAME}(?:{WS}[)\]])*"
_NAMES = rf"{_ELEMENT}(?:{WS},{WS}{_ELEMENT})*(?:{WS}[,)\]])*"
_CONTINUE = r"[ \t\f]*(?:\\\r?\n[ \t\f]*)*"  # blanks (form feeds too) and continuations
# A statement `A = T` or `A, B = T, U`, matched where a statement may start.
REBINDING = re.compile(
    rf"{_CONTINUE}{_NAMES}{_CONTINUE}=(?!=){_CONTINUE}(?P<values>{_NAMES})"
    rf"[ \t\f]*(?:#[^\n]*)?(?:\r?\n|;|$)"
)
LINES_BACK = 12  # how far above its `=` a rebinding may start (targets spanning lines)
_NAME_RE = re.compile(NAME)


# What may stand between `T =` and the callee: brackets, blanks, comments,
# continuations, and the callee's dotted prefix (`torch.`, `th . `).
_BEFORE_CALLEE = r"\s*=(?!=)(?:[(\s]|\\\r?\n|#[^\n]*\n)*+(?:[\w\s\\]*?\.\s*)?\Z"
_ASSIGNED_BEFORE = re.compile(rf"(?<![\w.])({NAME}){_BEFORE_CALLEE}")
_AS_NAME = re.compile(rf"\s+as\s+({NAME})")
_CALL_AFTER = re.compile(r"\s*\(")
WINDOW = 4000  # characters looked back from a callee for `T =`


def _scan(text: str, callees: set[str]):
    """(aliases, temporaries) around each occurrence of a callee name.

    Finds occurrences with str.find (fast) and only runs regular expressions
    on the text just before and after each one."""
    aliases, temps = set(), {}
    for callee in callees:
        start = 0
        while (i := text.find(callee, start)) >= 0:
            start = i + len(callee)
            if (i and (text[i - 1].isalnum() or text[i - 1] == "_")) or \
                    (start < len(text) and (text[start].isalnum() or text[start] == "_")):
                continue  # part of a longer name
            assigned = _ASSIGNED_BEFORE.search(text, max(0, i - WINDOW), i)
            if _CALL_AFTER.match(text, start):
                if assigned:
                    temps.setdefault(assigned.group(1), []).append(start)
            else:
                if assigned:
                    aliases.add(assigned.group(1))
                as_name = _AS_NAME.match(text, start)
                if as_name:
                    aliases.add(as_name.group(1))
    return aliases, temps


def candidate_temporaries(text: str, allocator_names: frozenset[str]) -> dict[str, list[int]]:
    """Names assigned the result of an allocator call (aliases followed), each
    with the positions just after the callee of its allocations."""
    callees, temps = set(allocator_names), {}
    todo = set(allocator_names)
    while todo:  # follow alias chains: alloc = torch.empty_like; a = alloc
        aliases, found = _scan(text, todo)
        for name, positions in found.items():
            temps.setdefault(name, []).extend(positions)
        todo = aliases - callees
        callees |= aliases
    return temps


def _occurrences(text: str, name: str, start: int = 0, end: int | None = None):
    while (i := text.find(name, start, end)) >= 0:
        start = i + len(name)
        if not (i and (text[i - 1].isalnum() or text[i - 1] in "_.")) and \
                not (start < len(text) and (text[start].isalnum() or text[start] == "_")):
            yield i


def _preceding_token(text: str, i: int) -> int:
    """Index of the character before position i, skipping blanks, newlines,
    opening brackets, backslash continuations and end-of-line comments."""
    j = i - 1
    while j >= 0:
        c = text[j]
        if c in " \t\f\r([\\":
            j -= 1
        elif c == "\n":
            line_start = text.rfind("\n", 0, j) + 1
            hash_at = text.find("#", line_start, j)
            j = (hash_at if hash_at >= 0 else j) - 1
        else:
            return j
    return -1


def _statement_starts(text: str, eq: int):
    """Where a statement whose `=` is at position eq may start: just after a
    `;` or `:` on that line, or at the start of that line or one above."""
    line_start = text.rfind("\n", 0, eq) + 1
    for j in range(line_start, eq):
        if text[j] in ";:":
            yield j + 1
    pos = line_start
    for _ in range(LINES_BACK):
        yield pos
        if pos == 0:
            return
        pos = text.rfind("\n", 0, pos - 1) + 1


def _is_rebound(text: str, temp: str, allocations: list[int]) -> bool:
    """Is `temp` a value of a statement `A = T` / `A, B = T, U` that follows
    one of its allocations, in a loop, with both T and A used in between (by
    the merge call)? Statements of one block appear in the text in order."""
    for i in _occurrences(text, temp):
        if not any(p < i for p in allocations):
            continue
        j = _preceding_token(text, i)
        if j < 0 or text[j] not in "=,":
            continue
        eq = j if text[j] == "=" else text.rfind("=", 0, j)
        if eq <= 0 or text[eq - 1] in "=!<>" or text[eq + 1:eq + 2] == "=":
            continue
        for start in _statement_starts(text, eq):
            match = REBINDING.match(text, start)
            if match and match.start("values") <= i < match.end("values") \
                    and temp in _NAME_RE.findall(match.group("values")) and not _keyword_like(text, match):
                targets = set(_NAME_RE.findall(text, match.start(), match.start("values")))
                if any(_merged_between(text, temp, targets, p, match.start()) for p in allocations):
                    return True
    return False


_CLOSER_NEXT = re.compile(r"(?:\s|#[^\n]*)*[)\]}]")


def _keyword_like(text: str, match) -> bool:
    """Text shaped like `A = T` that is no rebinding: `name=value,` with one
    target and a tuple value (a keyword argument line; as a statement it binds
    a tuple, which the rule does not take), or a line followed by a closing
    bracket (it is inside brackets, so not a statement)."""
    targets = text[match.start():match.start("values")]
    values = match.group("values").rstrip(" \t\n)]")
    if "," not in targets and values.endswith(","):
        return True
    return _CLOSER_NEXT.match(text, match.end()) is not None


def _merged_between(text: str, temp: str, targets: set[str], alloc_end: int, rebinding: int) -> bool:
    if not alloc_end < rebinding:
        return False
    if text.rfind("for", 0, alloc_end) < 0 and text.rfind("while", 0, alloc_end) < 0:
        return False  # no loop header before the allocation
    if next(_occurrences(text, temp, alloc_end, rebinding), None) is None:
        return False  # the merge call receives T
    return any(next(_occurrences(text, a, alloc_end, rebinding), None) is not None for a in targets)


def might_have_finding(text: str, allocator_names: frozenset[str]) -> bool:
    if not any(name in text for name in allocator_names):
        return False
    if "\r" in text:  # the expressions below know `\n` line ends; Python also takes `\r`
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "for" not in text and "while" not in text:
        return False
    temps = candidate_temporaries(text, allocator_names)
    return any(_is_rebound(text, temp, positions) for temp, positions in temps.items())

r"""ALC001's text predicate: False only when the file provably has no ALC001
finding. Decided on the text, without parsing; `tests/test_prefilter.py`
checks it differentially on generated programs, `bench/prefilter.py` on
whole releases.

What a finding needs (DESIGN 2, and the spellings issue 10 adds), in one
block of statements inside a loop's body:

  (a) an allocation: an `ast.Assign` with one Name target T, or an
      `ast.AnnAssign` `T: ANN = ...`, whose value is a call of an allocator:
      a Name/Attribute chain the resolver (`names.py`) resolves to a
      configured allocator, or `RECEIVER.new_empty(...)` on any receiver;
  (b) later, a merge call receiving T and the accumulator A as Name
      arguments (positional or keyword);
  (c) later, the rebinding: an `ast.Assign` with one target, `A = T` or
      tuples/lists of Names, A paired with T by position, A != T.

How the text is read. Between two tokens Python allows blanks, tabs, form
feeds, backslash continuations, parentheses around a name, and, inside
brackets, line ends and comments; `;` separates statements, `\r\n` and `\r`
end lines, and identifiers are compared after NFKC normalisation (`ｔｍｐ` is
`tmp`). The text is normalised the same way (line ends, NFKC: `scan_form`,
shared by every rule's predicate), and every
regular expression accepts all of those gaps. No stage decides what lies in
a string literal: text in a string can make a stage hold, never fail. Where
the text is read backwards across a line end (`_stops`), the line above may
end with a comment starting at ANY of its `#` or none (a `#` may sit in a
string): every reading is followed, and a stage holds if it holds for one.
Names are maximal runs of identifier characters; in text that parses, a
non-ASCII character outside strings and comments belongs to an identifier.

Stage 1, callee names. The resolver follows only imports, `from M import n
[as e]`, star imports and aliases `e = <Name or Attribute chain>`; so the
callee of an allocation ends with the allocator's last name (`torch.
empty_like`, `th . empty_like`, `(torch).empty_like`, `empty_like`) or is an
alias, and each alias is bound by text holding a name already known
(`e = <chain ending in a known name>` not called on its line, `... known as
e`), followed to a fixed point. No known name in the text: no finding.

Stage 2, loop keyword: a `for`/`while` precedes the allocation (its loop's
header comes first in the text).

Stage 3, allocation sites: occurrences of a known name followed (across gaps
and closing parentheses) by `(`, after that keyword. Read backwards from the
name: for a function, the rest of the callee chain can only be names, dots,
parentheses and gaps, with no name next to a name and no `(` left open
towards the `=` (more `)` than `(` read means the `=` is inside brackets);
so the reading of the real text stops at the assignment's `=`. Then the
target, on the line of `=`:
  - T right before `=`, starting a statement for sure (start of text, `;`,
    or a line end after no `\`): T, with its line's indentation;
  - T after `,` `(` `[` `{` (a keyword argument or default), after `#` (in
    a comment), after another `=` (two targets), or a dotted name that
    starts its statement (`self.buf = ...`): no allocation;
  - a line that starts a statement with `T:` and an annotation holding no
    `=`, `;` or unmatched closer: T (`T: Optional[Tensor] = ...`); with
    `x[` or `a.b` (a subscript or attribute target; or, if the line is
    inside brackets, no assignment at all): no allocation; `else: T =`: T;
  - anything else: the site is open (its T may be any name, see stage 4).
  A reading that stops elsewhere: for a function, no allocation there; for
  a method, whose receiver may be any expression, open where the receiver
  may extend past the stop (`]`, `}`, a quote, `+`/`-` of `1e-3`, or more
  `)` than `(`), else no allocation (`return x.new_empty()`, `f(a,
  x.new_empty())`).

Stage 4, rebindings. For T: an occurrence of T after its site that lies in
the value list of a statement `TARGETS = VALUES`. Value lists and target
lists are names, commas and brackets with gaps (no two names side by side,
no bracket opened right after a name or a closing bracket), balanced; the
statement starts where one may start (start of text, a line end, `;`, `:`)
and ends at a line end, `;` or a comment; both sides hold as many names (the
rule pairs them by position); `A = T,` with a bare target binds a tuple.
Every place a statement may start before the `=` is tried: those that read
as a list all give the same names. The pair (A, T), A != T, needs a site of
T before the rebinding, with both T and A passed to a call in between
(after `(`, `,` or `=`, before `,` or `)`), and, when both statements
start lines, the same indentation (one block). For open sites the rebinding
statements after the site are searched instead, and a value name T counts
if it occurs after the loop keyword and before the site followed by `=`,
`:` or `)` (how a target is followed).

Each stage keeps every text in which the rule can find something, so the
predicate is False only when the file has no finding.
"""
from __future__ import annotations

import keyword
import re
import string
import unicodedata
from functools import lru_cache

# --- pieces of regular expressions ---------------------------------------------------


def _chars(ascii_extra: str = "") -> str:
    """A character class: identifier characters (ASCII letters, digits, `_`,
    and every non-ASCII character: outside strings and comments a non-ASCII
    character can only belong to an identifier, like the middle dot in `a·b`)
    and `ascii_extra`. Written as a negated ASCII class: a class holding the
    range of non-ASCII characters takes milliseconds to compile."""
    allowed = set(string.ascii_letters + string.digits + "_" + ascii_extra)
    ranges, i = [], 0
    while i < 128:
        if chr(i) in allowed:
            i += 1
            continue
        j = i
        while j + 1 < 128 and chr(j + 1) not in allowed:
            j += 1
        ranges.append(f"\\x{i:02x}" + (f"-\\x{j:02x}" if j > i else ""))
        i = j + 1
    return "[^" + "".join(ranges) + "]"


_WC = _chars()  # an identifier character
NAME = rf"(?:[^\W\d]|[^\x00-\x7f]){_WC}*"
_NAME_RE = re.compile(NAME)
# A gap between two tokens: blanks, line ends, backslash continuations and
# comments (a comment is taken to its line end, so the gap has one reading).
G = r"(?:[ \t\f\n]|\\\n|#[^\n]*(?![^\n]))*"
G_RE = re.compile(G)
# The end of a statement after its last token.
_TAIL = r"(?:[ \t\f]|\\\n)*(?:#[^\n]*)?(?:\n|;|\Z)"
# A list of names, each in brackets or not, separated by commas.
_ELEM = rf"(?:[(\[]{G})*{NAME}(?:{G}[)\]])*"
_NAMES = rf"{_ELEM}(?:{G},{G}{_ELEM})*(?:{G}[,)\]])*"
VALUES_AFTER_EQ = re.compile(rf"{G}(?P<values>{_NAMES}){_TAIL}")
# The shortest such list (in text that does not parse, a closing bracket may
# follow on the next line: `a = t\n)` should still be parsed, to report it).
_ELEM_SHORT = rf"(?:[(\[]{G})*{NAME}(?:{G}[)\]])*?"
VALUES_AFTER_EQ_SHORT = re.compile(rf"{G}(?P<values>{_ELEM_SHORT}(?:{G},{G}{_ELEM_SHORT})*?(?:{G}[,)\]])*?){_TAIL}")
TARGETS = re.compile(rf"{G}{_NAMES}{G}")
# An assignment `=` (not `==`, `<=`, `+=`, `:=` ...) before a list of names
# and the end of the statement: rebindings searched forwards for open sites.
REBINDING_EQ = re.compile(rf"=(?<![=!<>:+\-*/%&|^@]=)(?!=){G}{_NAMES}{_TAIL}")
_NOT_ASSIGN = frozenset("=!<>:+-*/%&|^@")

# What _stops() reads backwards, on one reversed line: a Name/Attribute chain
# in parentheses (no two names side by side: `return x`, `await f` end it),
# a dotted name, a list of names with commas and brackets.
# (Right before a callee name only `.`, `(` or `)` may stand, blanks aside.)
# A keyword (but the constants) ends a chain: `return (\n x.new_empty(n))`.
_NOT_KEYWORD = "(?!(?:{})(?!{}))".format(
    "|".join(k[::-1] for k in keyword.kwlist if k not in ("None", "True", "False")), _WC)
CHAIN_NEXT = rf"(?:[.()][ \t\f]*(?:{_NOT_KEYWORD}{_WC}+[ \t\f]*)?)*"
CHAIN = (re.compile(rf"[ \t\f]*{CHAIN_NEXT}"),
         re.compile(rf"[ \t\f]*(?:{_NOT_KEYWORD}{_WC}+[ \t\f]*)?{CHAIN_NEXT}"))
DOTTED_NAME = (re.compile(_chars(". \t\f") + "*"),) * 2
# A list of names: no two names side by side, and an opening bracket only
# where a list may open one (after `=`, `,`, another bracket, `;`, `:` or at
# the start of a line), never after a name or a closing bracket (a call).
_LIST_NEXT = rf"(?:(?:[,)\]]|[(\[](?=[ \t\f]*(?:[=,(\[;:]|$)))[ \t\f]*(?:{_WC}+[ \t\f]*)?)*"
_LIST_AFTER_NAME = re.compile(rf"[ \t\f]*(?:{_WC}+[ \t\f]*)?{_LIST_NEXT}")
VALUES_BEFORE_NAME = (re.compile(rf"[ \t\f]*{_LIST_NEXT}"), _LIST_AFTER_NAME)
TARGETS_BEFORE_EQ = (_LIST_AFTER_NAME, _LIST_AFTER_NAME)
CLOSERS = (re.compile(r"[ \t\f)]*"),) * 2
GAPS = (re.compile(r"[ \t\f]*"),) * 2
ARGUMENT_END = re.compile(rf"{G}[,)]")
TARGET_END = re.compile(rf"{G}(?:=(?!=)|:(?!=)|\))")
NAME_END = re.compile(rf"{_WC}+")
# Backwards from `=` on its line: blanks, a name (reversed), blanks.
TARGET_NAME = re.compile(rf"[ \t\f]*({_WC}+)[ \t\f]*")
# A statement's beginning, on its line: a dotted name, then `[` or `:`.
LINE_HEAD = re.compile(rf"[ \t\f]*(?P<chain>{NAME}(?:[ \t\f]*\.[ \t\f]*{NAME})*)[ \t\f]*(?P<op>\[|:(?!=))")
BLANKS = re.compile(r"[ \t\f]*")
# After the last name of an alias's value: the end of the statement, or `)`.
ALIAS_VALUE_END = re.compile(r"[ \t\f]*(?:\\\n[ \t\f]*)*(?:[\n;#)]|\Z)")
# Around a name in a list of names (cheap tests before reading backwards).
VALUE_END = re.compile(r"[ \t\f]*(?:[,)\]\n;#\\]|\Z)")
VALUE_START = re.compile(r"[ \t\f]*(?:[=,(\[\n]|\Z)")
_SUITE_HEADERS = frozenset({"else", "try", "finally"})  # `else: T = ...`

# After a callee name: a call, possibly after closing parentheses.
CALL_AFTER = re.compile(rf"{G}(?:\){G})*\(")
# `(` right after the name on its logical line: the expression holding the
# name is a call, so an assignment of it binds no alias of the callee.
DIRECT_CALL = re.compile(r"[ \t\f]*(?:\\\n[ \t\f]*)*\(")
IMPORT_AS = re.compile(rf"{G}as(?!{_WC}){G}({NAME})")


_ASCII_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_ASCII_NAME_CHARS_DOT = _ASCII_NAME_CHARS | {"."}


def _is_name_char(c: str) -> bool:
    return c in _ASCII_NAME_CHARS or c >= "\x80"


def _names_at(text: str, name: str, start: int = 0, end: int | None = None):
    """Positions of `name` as a Name (not inside a longer identifier, not an
    attribute) within text[start:end]. str.find, not a regular expression:
    compiling one per name would cost more than the search."""
    size, length = len(name), len(text)
    i = text.find(name, start, end)
    while i >= 0:
        j = i + size
        if (i == 0 or not (text[i - 1] in _ASCII_NAME_CHARS_DOT or text[i - 1] >= "\x80")) and \
                (j == length or not (text[j] in _ASCII_NAME_CHARS or text[j] >= "\x80")):
            yield i
        i = text.find(name, j, end)


def _first_loop(text: str) -> int:
    """Where the first `for` or `while` is (-1: nowhere); a loop header comes
    before every statement of its body."""
    first = next(_names_at(text, "for"), -1)
    return next(_names_at(text, "while", 0, first if first >= 0 else None), first)


_last_form = ("", "")  # (text, its scan form): both rules' predicates ask for the same text in turn


def scan_form(text: str) -> str:
    """The text as the text predicates read it: `\r\n` and `\r` line ends as
    `\n`, and identifiers NFKC-normalised as the parser reads them (`ｅｍｐｔｙ_like`
    is `empty_like`, `tmpµ` is `tmpμ`, a letter and a combining accent are one
    letter). Remembered for the last text: every predicate reads it."""
    global _last_form
    if _last_form[0] is text:
        return _last_form[1]
    form = text if text.isascii() or unicodedata.is_normalized("NFKC", text) else _identifiers_nfkc(text)
    if "\r" in form:
        form = form.replace("\r\n", "\n").replace("\r", "\n")
    _last_form = (text, form)
    return form


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _identifiers_nfkc(text: str) -> str:
    """NFKC applied to each run the tokenizer may read as one identifier
    (ASCII letters, digits and `_`, and any non-ASCII character) that holds a
    non-ASCII character, and that stays identifier-like: a run NFKC turns
    partly into ASCII punctuation (`＂`, `＼`, `＝`) is no identifier (outside a
    string the file does not parse; inside one, the text is what it says)."""
    out, last, size = [], 0, len(text)
    for m in _NON_ASCII.finditer(text):
        start, end = m.start(), m.end()
        if start < last:
            continue  # inside the run just normalised
        while start > last and text[start - 1] in _ASCII_NAME_CHARS:
            start -= 1
        while end < size and (text[end] in _ASCII_NAME_CHARS or text[end] >= "\x80"):
            end += 1
        run = text[start:end]
        normal = unicodedata.normalize("NFKC", run)
        if any(c < "\x80" and c not in _ASCII_NAME_CHARS for c in normal):
            normal = run
        out += (text[last:start], normal)
        last = end
    out.append(text[last:])
    return "".join(out)


# --- reading backwards ---------------------------------------------------------------


def _stops(text: str, end: int, runs: tuple, crossings: list | None = None) -> list:
    r"""Read backwards from `end` (exclusive) over what `runs` accepts (the
    first pattern on the line of `end`, the second on lines above, each on
    the reversed line) and over line ends, as the text before a token may be written:
    the line above may end with a continuation `\` or with a comment that
    starts at any of its `#` (which `#` starts the comment and which sits in a
    string is not decided: every reading is followed). Returns, per reading,
    (position where it stops: the character it cannot read, or -1 at the
    start of the text; `)` minus `(` read on the way). `crossings` receives
    the starts of the lines that a reading ran through. Only the reading up
    to a line's first `#` can run on past that line: linear work."""
    first_line = text.rfind("\n", 0, end) + 1
    read = runs[0].match(text[first_line:end][::-1]).group()
    if end - len(read) > first_line:  # the common case: the reading stops on its line
        return [(end - len(read) - 1, read.count(")") - read.count("("))]
    stops, todo, seen = [], [(end, 0)], set()
    while todo:
        pos, depth = todo.pop()
        line_start = text.rfind("\n", 0, pos) + 1
        run = runs[line_start != first_line]
        read = run.match(text[line_start:pos][::-1]).group()
        depth += read.count(")") - read.count("(")
        stop = pos - len(read) - 1
        if stop >= line_start:
            stops.append((stop, depth))
            continue
        if crossings is not None:
            crossings.append(line_start)
        if line_start == 0:
            stops.append((-1, depth))
            continue
        above = text.rfind("\n", 0, line_start - 1) + 1
        line = text[above:line_start - 1]
        ends = [above + h for h, c in enumerate(line) if c == "#"] if "#" in line else []
        ends.append(line_start - 2 if line.endswith("\\") else line_start - 1)
        for e in ends:
            if (e, depth) not in seen:
                seen.add((e, depth))
                todo.append((e, depth))
    return stops


def _starts_statement(text: str, i: int) -> bool:
    r"""Does a statement start at position i for sure: only blanks before it,
    after the start of the text, a `;`, or a line end that no `\` continues?"""
    j = i - 1
    while j >= 0 and text[j] in " \t\f":
        j -= 1
    return j < 0 or text[j] == ";" or (text[j] == "\n" and text[j - 1:j] != "\\")


def _indent(text: str, line_start: int) -> tuple[int, int]:
    """A line's indentation as Python's tokenizer measures it: the column with
    tabs to multiples of 8 and with tabs as 1 (a form feed resets both).
    Statements of one block start lines with equal indentation."""
    col = alt = 0
    for c in BLANKS.match(text, line_start).group():
        if c == " ":
            col, alt = col + 1, alt + 1
        elif c == "\t":
            col, alt = (col // 8 + 1) * 8, alt + 1
        elif c == "\f":
            col = alt = 0
    return col, alt


def _line_indent(text: str, i: int):
    """The indentation of the line of position i, if only blanks precede i on
    it (i starts the line's first statement); else None."""
    line_start = text.rfind("\n", 0, i) + 1
    return _indent(text, line_start) if text[line_start:i].strip(" \t\f") == "" else None


# --- stage 2: allocation sites -------------------------------------------------------

PLAIN, OPEN, DROPPED = "plain", "open", "dropped"


def _target_at(text: str, eq: int):
    """(kind, target) of the assignment whose `=` is at `eq`; a plain
    target is (T, indentation of its block if T starts a line, else None)."""
    if text[eq - 1:eq] in _NOT_ASSIGN or text[eq + 1:eq + 2] == "=":
        return DROPPED, None  # a comparison, an augmented assignment, a walrus
    line_start = text.rfind("\n", 0, eq) + 1
    m = TARGET_NAME.match(text[line_start:eq][::-1])
    if m and not m.group(1)[-1].isdigit():
        name = m.group(1)[::-1]
        before = eq - m.end()
        if _starts_statement(text, before):
            return PLAIN, (name, _line_indent(text, before))
        j = before - 1
        while text[j] in " \t\f":
            j -= 1
        if text[j] in ",([{#":
            return DROPPED, None  # a keyword argument, a parameter default, a comment
        if text[j] == "=" and text[j - 1:j] not in _NOT_ASSIGN:
            return DROPPED, None  # `a = T = ...`: two targets
        if text[j] == ".":
            # `self.buf = ...` (an attribute target) or the end of an annotation
            # `T: a.b = ...`: a dotted name that starts a statement is a target.
            chain = DOTTED_NAME[0].match(text[line_start:j][::-1]).end()
            if _starts_statement(text, j - chain):
                return DROPPED, None
    return _line_head(text, line_start, eq)


def _line_head(text: str, line_start: int, eq: int):
    """An assignment target that is not a plain name right before its `=`,
    read from the start of the line when a statement starts there:
    `T: ANN = ...` is T's; `x[k] = ...` and `a.b: ANN = ...` have no name
    target (and if the line is inside brackets, `=` is no assignment at
    all); `else: T = ...` is T's. Anything else is open."""
    m = LINE_HEAD.match(text, line_start, eq)
    if not m or not _starts_statement(text, m.start("chain")) or m.group("chain") in ("case", "match"):
        return OPEN, None  # (`case [x]: T = ...` is a pattern, not a subscript)
    chain, rest = m.group("chain"), text[m.end():eq]
    if m.group("op") == "[" or "." in chain:
        return DROPPED, None
    if chain in _SUITE_HEADERS:
        target = re.fullmatch(rf"[ \t\f]*({NAME})[ \t\f]*", rest)
        return (PLAIN, (target.group(1), None)) if target else (OPEN, None)
    depth = 0
    for c in rest:
        depth += (c in "([{") - (c in ")]}")
        if depth < 0 or c in ";=":
            return OPEN, None  # more than one annotation could hold: not read
    return PLAIN, (chain, _line_indent(text, m.start("chain")))


def _site(text: str, i: int, method: bool):
    """(kinds, targets) of the allocation statement that a call of the callee
    name at `i` may be the value of, one per reading of the text before it;
    targets are (T, block indentation or None).

    A function's callee is a Name/Attribute chain, so only names, dots,
    parentheses and gaps can stand between the `=` and the name, and no `(`
    of the chain stays open to the left of `=` (`f(out=torch.empty(n))`).
    A method's receiver may be any expression: only where the text read is a
    chain whose parentheses close, and what stops the reading cannot end an
    expression, is the receiver known to be in it."""
    kinds, names = set(), set()
    for stop, depth in _stops(text, i, CHAIN):
        c = text[stop] if stop >= 0 else ""
        if depth > 0:
            kind, name = (OPEN if method else DROPPED), None  # the `=` is inside brackets
        elif c == "=":
            kind, name = _target_at(text, stop)
        elif method and c in "]}\"'+-":
            kind, name = OPEN, None  # the receiver may begin before: `x[0]`, `"s"`, `1e-3`
        else:
            kind, name = DROPPED, None
        kinds.add(kind)
        if name:
            names.add(name)
    return kinds, names


def _sites(text: str, first_loop: int, functions: frozenset, methods: frozenset):
    """({T: [(site, block indentation or None), ...]}, [open site, ...]),
    following aliases of callees."""
    temps: dict[str, list] = {}
    open_sites: list[int] = []
    known = set(functions) | set(methods)
    batch = frozenset(known)
    while batch:
        new = set()
        for i, name in _identifiers(text, batch):
            j = i + len(name)
            if i > first_loop and (text[j:j + 1] == "(" or CALL_AFTER.match(text, j)):
                kinds, targets = _site(text, i, name in methods)  # (a method reads more openly)
                for temp, indent in targets:
                    temps.setdefault(temp, []).append((i, indent))
                if OPEN in kinds:
                    open_sites.append(i)
            if text[j:j + 1] == "(" or DIRECT_CALL.match(text, j):
                continue
            new.update(_aliases(text, i, j))  # `e = <...>.name`, `import ... name as e`
        batch = frozenset(new - known)
        known |= batch
    return temps, open_sites


def _identifiers(text: str, names: frozenset):
    """(position, name) of each occurrence of the names as whole identifiers
    (attributes included), with one str.find pass per shortest name."""
    for anchor, holders in _anchors(names):
        i = text.find(anchor)
        while i >= 0:
            for name, offset in holders:
                start, end = i - offset, i - offset + len(name)
                if start >= 0 and text.startswith(name, start) and \
                        (start == 0 or not _is_name_char(text[start - 1])) and \
                        (end == len(text) or not _is_name_char(text[end])):
                    yield start, name
            i = text.find(anchor, i + 1)


@lru_cache(maxsize=64)
def _anchors(names: frozenset) -> tuple:
    """The substrings searched for (the shortest names, those sharing their
    first four characters by that prefix: `new_`), each with the names it
    stands for and where it stands in them; every name under one anchor only."""
    anchors = [gate for gate, _ in _gates(names)]
    owner = {n: next(a for a in anchors if a in n) for n in names}
    return tuple((a, tuple((n, k) for n in sorted(names) if owner[n] == a
                           for k in range(len(n)) if n.startswith(a, k)))
                 for a in anchors)


def _aliases(text: str, i: int, j: int):
    m = IMPORT_AS.match(text, j)
    if m:
        yield m.group(1)
        return
    if not ALIAS_VALUE_END.match(text, j):
        return  # the value of `e = <chain>` ends the statement (or a parenthesis)
    for stop, _ in _stops(text, i, CHAIN):
        if stop > 0 and text[stop] == "=" and text[stop - 1] not in _NOT_ASSIGN:
            # The alias, before `=` (gaps and closing parentheses between).
            for end, _ in _stops(text, stop, CLOSERS):
                if end >= 0 and _is_name_char(text[end]):
                    line_start = text.rfind("\n", 0, end) + 1
                    yield NAME_END.match(text[line_start:end + 1][::-1]).group()[::-1]


# --- stage 3: rebindings -------------------------------------------------------------


def _statement_at(text: str, eq: int):
    """The statement `TARGETS = VALUES` of names whose `=` is at `eq`, as
    (pairs (A, T) by position, start, block indentation or None, values
    start, values end), or None.

    Rebinding pairs are `A = T` or `A, B = T, U`: as many names on each side,
    balanced brackets. Target lists are read from every place before `eq`
    where a statement may start, and value lists both as far as they may run
    and as short as they may end (`acc, = tmp,` before a line holding a name);
    every reading that pairs names counts: the pairs of all, the nearest start
    (the most text before the statement for the merge: a `#` or `:` in a
    string on the line above reads as a start too), the span of all values.
    The block indentation is known only when all starts begin lines indented
    alike."""
    if text[eq - 1:eq] in _NOT_ASSIGN or text[eq + 1:eq + 2] == "=":
        return None
    readings = []
    for pattern in (VALUES_AFTER_EQ, VALUES_AFTER_EQ_SHORT):
        v = pattern.match(text, eq + 1)
        if v and _balanced(_code(v.group("values"))) and all(v.span("values") != r.span("values") for r in readings):
            readings.append(v)  # the value list of a statement is balanced: `f(\n out=tmp)` is no statement
    if not readings:
        return None
    crossings: list[int] = []
    starts = crossings + [s + 1 for s, _ in _stops(text, eq, TARGETS_BEFORE_EQ, crossings)
                          if s < 0 or text[s] in ";:"]
    pairs, nearest, spans, indents = [], -1, [], set()
    for start in sorted(set(starts)):
        if not TARGETS.fullmatch(text, start, eq):
            continue
        targets = _code(text[start:eq])
        target_names = _names(targets)
        if not _balanced(targets):
            continue
        for v in readings:
            values = _code(v.group("values"))
            if len(target_names) != len(_names(values)):
                continue
            if "," not in targets and "[" not in targets and values.rstrip().endswith(","):
                continue  # `A = T,` binds a tuple: `f(\n out=tmp,\n ...)` is no rebinding
            pairs += [p for p in zip(target_names, _names(values)) if p not in pairs]
            nearest = max(nearest, start)
            spans.append(v.span("values"))
            first = G_RE.match(text, start).end()  # the statement's first token
            indents.add(_line_indent(text, first) if _starts_statement(text, first) else None)
    if not pairs:
        return None
    indent = indents.pop() if len(indents) == 1 else None
    return pairs, nearest, indent, min(s for s, _ in spans), max(e for _, e in spans)


def _balanced(span: str) -> bool:
    return span.count("(") + span.count("[") == span.count(")") + span.count("]")


def _names(span: str) -> list[str]:
    """The names in a span (`None`, `True` ... are constants, not names)."""
    return [n for n in _NAME_RE.findall(span) if not keyword.iskeyword(n)]


def _code(span: str) -> str:
    """A span of names, commas, brackets and gaps, without comments (in such
    a span a `#` can only start a comment)."""
    return re.sub(r"#[^\n]*", "", span) if "#" in span else span


def _pair_found(text: str, temp: str, stmt, sites: list) -> bool:
    """Is some (A, T) pair of the rebinding `stmt` preceded by a site of T in
    the same block, with T and A passed to a call in between (the merge)?"""
    pairs, start, indent = stmt[:3]
    for acc, value in pairs:
        if value != temp or acc == temp:
            continue
        for site, site_indent in sites:
            if site < start and (indent is None or site_indent is None or indent == site_indent) \
                    and _passed(text, temp, site, start) and _passed(text, acc, site, start):
                return True
    return False


def _passed(text: str, name: str, start: int, end: int) -> bool:
    """Does `name` occur in text[start:end] as an argument of a call: a whole
    argument, after `(`, `,` or a keyword's `=`, before `,` or `)`?"""
    for i in _names_at(text, name, start, end):
        if ARGUMENT_END.match(text, i + len(name)) and \
                any(s >= 0 and text[s] in "(,=" for s, _ in _stops(text, i, GAPS)):
            return True
    return False


def _rebound(text: str, temp: str, sites: list) -> bool:
    """Is T in the value list of a rebinding after one of its sites, with T
    and an accumulator A between that site and the rebinding?"""
    for i in _names_at(text, temp, min(s for s, _ in sites) + 1):
        # Cheap tests first: in a list of names, a name is followed by a
        # comma, a closing bracket or the end of the statement, and preceded by
        # `=`, a comma, an opening bracket or a line end.
        after = VALUE_END.match(text, i + len(temp))
        if not after or not VALUE_START.match(text[max(0, i - 80):i][::-1]):
            continue
        for eq, _ in _stops(text, i, VALUES_BEFORE_NAME):
            if eq < 0 or text[eq] != "=":
                continue
            stmt = _statement_at(text, eq)
            if stmt and stmt[3] <= i < stmt[4] and _pair_found(text, temp, stmt, sites):
                return True
    return False


def _rebound_after_open_site(text: str, open_sites: list, first_loop: int) -> bool:
    """For sites whose temporary was not read: a rebinding after one whose
    value T may be that site's target (T occurs before the site, after the
    first loop keyword, followed by `=`, `:` or `)`)."""
    pos = min(open_sites)
    while (m := REBINDING_EQ.search(text, pos)) is not None:
        pos = m.start() + 1  # every `=`: a match inside a string must not hide a real one
        stmt = _statement_at(text, m.start())
        if stmt is None:
            continue
        for temp in {t for _, t in stmt[0]}:
            sites = set()
            for i in _names_at(text, temp, first_loop + 1, max(open_sites)):
                if TARGET_END.match(text, i + len(temp)):
                    indent = _line_indent(text, i) if _starts_statement(text, i) else None
                    sites.update((s, indent) for s in open_sites if s > i)
            if sites and _pair_found(text, temp, stmt, sorted(sites, key=lambda x: x[0])):
                return True
    return False


# --- the predicate -------------------------------------------------------------------


@lru_cache(maxsize=64)
def _callees(functions: frozenset, methods: frozenset) -> tuple[frozenset, tuple]:
    """The names, and the substring tests that find them: the shortest names
    (those holding no other), those sharing their first four characters tested
    for that prefix first (`new_` for `new_ones`, `new_full`, `new_zeros`)."""
    names = functions | methods
    return names, _gates(names)


@lru_cache(maxsize=64)
def _gates(names: frozenset) -> tuple:
    """((substring, the shortest names it stands for), ...): a shortest name
    alone, or the prefix of four characters that several share."""
    groups: dict = {}
    for name in sorted(_shortest(names)):
        groups.setdefault(name[:4], []).append(name)
    return tuple((held[0], (held[0],)) if len(held) == 1 else (prefix, tuple(held))
                 for prefix, held in groups.items())


@lru_cache(maxsize=64)
def _shortest(names: frozenset) -> tuple:
    """The names that hold none of the others (`empty` for `empty_like`)."""
    return tuple(n for n in names if not any(o != n and o in n for o in names))


STAGES = ("no allocator name", "no loop keyword", "no allocation site", "no rebinding", "kept")


def stage_reached(text: str, allocator_names: frozenset[str], method_names: frozenset[str] = frozenset(),
                  last: int = 4) -> int:
    """How far the text gets (an index into STAGES); stops after stage `last`
    (bench/prefilter.py times the stages that way)."""
    names, gates = _callees(allocator_names, method_names)
    text = scan_form(text)  # `ｅｍｐｔｙ_like` is `empty_like`
    if not any(gate in text and (len(held) == 1 or any(n in text for n in held)) for gate, held in gates):
        return 0
    if last < 1:
        return 1
    first_loop = _first_loop(text)
    if first_loop < 0:
        return 1
    if last < 2:
        return 2
    temps, open_sites = _sites(text, first_loop, allocator_names, method_names)
    if not temps and not open_sites:
        return 2
    if last < 3:
        return 3
    if any(_rebound(text, temp, sites) for temp, sites in temps.items()):
        return 4
    return 4 if open_sites and _rebound_after_open_site(text, open_sites, first_loop) else 3


def might_have_finding(text: str, allocator_names: frozenset[str],
                       method_names: frozenset[str] = frozenset()) -> bool:
    """`allocator_names`: last names of allocator functions (`empty_like`);
    `method_names`: method allocators (`new_empty`), on any receiver."""
    return stage_reached(text, allocator_names, method_names) == 4

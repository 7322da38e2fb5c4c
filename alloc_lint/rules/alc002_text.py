"""ALC002's text predicate: skip files that cannot hold a finding, unparsed.

`might_match(text)` is False only when the file provably has no ALC002
finding. A finding is a statement `N = CALL` (or `N: ANN = CALL`, or a
conditional expression with CALL as one arm) inside a loop, where CALL is a
call of a concatenation (its callee resolves through the module's imports to
`torch.cat`, ..., `numpy.append`, ...) and N is one of the values it joins,
written as a bare name. Each stage below follows from that:

1. The callee resolves to `torch.*`, `numpy.*` or `cupy.*` only through an
   import naming the module, so the text holds `torch`, `numpy` or `cupy`; the
   statement is in a loop, so the text holds `for` or `while`.
2. The callee is a name or attribute whose last name is one of the spellings:
   the functions' own names (NumPy's and CuPy's `append` only where `numpy` or
   `cupy` occurs), or an alias bound to one (`from torch import cat as join`:
   `as NAME` after a spelling; `join = torch.cat`: an assignment of a name or
   attribute whose last name is a spelling, so its value is not followed by
   `(` on that line). Aliases are collected to a fixed point, all over the
   file (a name may be bound after the function that calls it).
3. At a call of a spelling (the spelling, then only blanks, line breaks,
   comments and `)` before `(`), the tokens before the callee, skipping its
   dotted prefix and opening parentheses, must be `=` (not `==`, `:=`, `+=`,
   ...) or `else`. For `else`, and wherever the text before is unclear (a
   string and a comment on a line crossed, a parenthesised prefix, more than
   LINES_BACK lines crossed), the file is kept. For `=`, the physical line up
   to it must be a single name in optional parentheses: that is N (a `:`
   before the `=`, an annotation or a one-line clause, keeps the file; any
   other target, an attribute, subscript, tuple or chained target, is no
   finding; a target on an earlier line keeps the file).
4. N's line starts a statement of a loop body, so it is indented deeper than
   an earlier line starting with `for`, `while` or `async for` (indentation
   counted in characters after the last form feed: Python rejects
   indentation whose order depends on the tab width; a header continued from
   a line ending in `\\` counts as not indented; N's line continued from such
   a line keeps the file).
5. N is a bare value in the call's brackets: preceded by `[`, `(`, `,` or `=`
   (or the start of the arguments) and followed by `,`, `]` or `)` (or their
   end), with only blanks, line breaks and parentheses between. The arguments
   end at the bracket closing the call's `(`, counted naively; when they hold
   a quote or `#` (brackets in strings or comments would throw the count) or
   run past WINDOW characters, the file is kept.

The parser reads identifiers NFKC-normalised, so the text is read NFKC-normalised
(`prefilter.scan_form`, shared with ALC001's predicate); `\\r\\n` and `\\r` line ends become `\\n`.
"""
from __future__ import annotations

import keyword
import re

from ..analysis.prefilter import scan_form

WINDOW = 4000  # characters of a call's arguments read before giving up (keep)
LINES_BACK = 40  # physical lines crossed backwards from a callee before giving up (keep)

_BASE = ("cat", "concat", "concatenate", "hstack", "vstack", "dstack", "column_stack", "row_stack")
_GAP = " \t\f\\"
# The spellings holding each searched substring, and where it stands in them.
_HOLDING = {
    needle: [(word, word.index(needle)) for word in (*_BASE, "append") if needle in word]
    for needle in ("cat", "stack", "append")
}
# Characters that stand before the substring inside a spelling (`concat`, `hstack`, `row_stack`).
_INNER = {needle: {w[o - 1] for w, o in words if o} for needle, words in _HOLDING.items()}


def _word_or(extra: str = "") -> str:
    """A class of the characters the tokenizer may read into an identifier
    (ASCII letters, digits and `_`, and every non-ASCII character: combining
    marks and `·` are no `\\w`, and NFKC may make an identifier of others),
    and of `extra`. Written as the ASCII characters it leaves out: `re` takes
    2.5 ms to compile a class that spans the non-ASCII code points, 0.1 ms
    this one (14 of them were a tenth of a cold run's start)."""
    left_out = (chr(i) for i in range(128))
    return "[^" + "".join(f"\\x{ord(c):02x}" for c in left_out
                          if not (c.isalnum() or c == "_" or c in extra)) + "]"


_W = _word_or()  # one word character
_NOT_W = rf"(?!{_W})"
_WORD = re.compile(rf"{_W}+")
_LOOP_KEYWORD = re.compile(rf"(?:async[ \t\f]+)?(?:for|while){_NOT_W}")
# Keywords that start a statement and can start no expression (so no
# continuation line inside brackets): the line starts a real statement.
_SCOPE_KEYWORD = re.compile(rf"(?:def|class|async[ \t\f]+def){_NOT_W}")
_ANNOTATED = re.compile(rf"[ \t\f]*({_W}+)[ \t\f]*:(?!=)")
_ANNOTATED_ATTRIBUTE = re.compile(rf"[ \t\f]*{_W}+(?:[ \t\f]*\.[ \t\f]*{_W}+)+[ \t\f]*:(?!=)")
_KEYWORDS = frozenset(keyword.kwlist) | {"match", "case", "type"}
_CONDITIONAL_TARGET = re.compile(rf"[ \t\f]*\(*[ \t\f]*({_W}+)[ \t\f]*\)*[ \t\f]*(?::[^=]*)?=(?!=)")
_NOT_A_VALUE = re.compile(rf"[ \t\f]*(?:return|yield|raise|assert|del|await){_NOT_W}")
_TARGETS_CHAR = _word_or(" \t\f,()[]*")  # a word character, or one that joins names in a for's targets
_FOR_TARGETS = re.compile(rf"(?:async[ \t\f]+)?for{_NOT_W}({_TARGETS_CHAR}*?)(?<!{_W})in{_NOT_W}")
# A whole statement `N = value` on one line (no annotation: `N: T = v` is matched too).
_ASSIGNS = re.compile(rf"[ \t\f]*({_W}+)[ \t\f]*(?::[^=]*)?=(?!=)")
_TARGET_LINE = re.compile(rf"[ \t\f]*\(*[ \t\f]*({_W}+)[ \t\f]*\)*[ \t\f]*\Z")
_GAPS = r"(?:\s|\\\n|#[^\n]*)+"
_AS_NAME = re.compile(rf"{_GAPS}as{_GAPS}({_W}+)")
_AUGMENTED = set("=!<>:+-*/%&|^@")


class _Keep(Exception):
    """Unsure: the file is kept."""


def might_match(text: str) -> bool:
    text = scan_form(text)
    if not any(m in text for m in ("torch", "numpy", "cupy")):
        return False
    if "for" not in text and "while" not in text:
        return False
    try:
        return _Scan(text).has_candidate()
    except _Keep:
        return True


class _Scan:
    def __init__(self, text: str):
        self.text = text
        self.lines = None  # physical lines, split when a loop is looked for
        self.lexed = {}  # line index -> _lex_line(line)

    def has_candidate(self) -> bool:
        text = self.text
        appends = "numpy" in text or "cupy" in text
        calls = []  # (spelling, start of the callee name, position of its `(`)
        aliases: set[str] = set()
        # The functions' own names, found through the substrings they share.
        for needle in ("cat", "stack", "append") if appends else ("cat", "stack"):
            for start, word in self._spellings_at(needle):
                self._note(word, start, calls, aliases)
        todo, seen = aliases - set(_BASE), set(_BASE)
        while todo:  # aliases of aliases, to a fixed point
            seen |= todo
            found: set[str] = set()
            for word in todo:
                for start in self._occurrences(word):
                    self._note(word, start, calls, found)
            aliases |= found
            todo = found - seen
        for word, start, paren in calls:
            target = self._target(start)
            if not target:
                continue
            end = self._bare_in_arguments(target[0], paren, word == "append" or word in aliases)
            if end is None or not self._ends_value(end, target[2]):
                continue
            if self._in_loop_body(target, aliases):
                return True
        return False

    def _note(self, word: str, start: int, calls: list, aliases: set) -> None:
        """Record a call of `word` starting at `start`, or the alias it is bound to."""
        end = start + len(word)
        paren = self._call_paren(end)
        if paren is not None:
            calls.append((word, start, paren))
        if not self._call_on_same_line(end):
            target = self._target(start)
            if target:
                aliases.add(target[0])
        alias = _AS_NAME.match(self.text, end)
        if alias:
            aliases.add(alias.group(1))

    def _spellings_at(self, needle: str):
        """(start, spelling) of every whole-word spelling holding `needle`."""
        text, start, size = self.text, 0, len(self.text)
        words = _HOLDING[needle]
        inner = _INNER[needle]
        while (i := text.find(needle, start)) >= 0:
            start = i + 1
            before = text[i - 1] if i else " "
            if _is_word_char(before) and before not in inner:
                continue  # inside a longer word: `allocate`, `callstack`
            for word, offset in words:
                begin = i - offset
                end = begin + len(word)
                if begin >= 0 and text.startswith(word, begin) \
                        and not (begin and _is_word_char(text[begin - 1])) \
                        and not (end < size and _is_word_char(text[end])):
                    yield begin, word
                    start = end
                    break

    # --- stage 2: occurrences of a spelling, calls, aliases ---------------------------

    def _occurrences(self, word: str):
        text, n, start = self.text, len(word), 0
        while (i := text.find(word, start)) >= 0:
            start = i + n
            if (i and _is_word_char(text[i - 1])) or (start < len(text) and _is_word_char(text[start])):
                continue
            yield i

    def _call_paren(self, pos: int) -> int | None:
        """Where the `(` of a call of the name ending at pos is, if any: after
        blanks, line breaks, comments and closing parentheses only."""
        text, n = self.text, len(self.text)
        while pos < n:
            c = text[pos]
            if c in " \t\f\n\\)":
                pos += 1
            elif c == "#":
                end = text.find("\n", pos)
                pos = n if end < 0 else end
            else:
                return pos if c == "(" else None
        return None

    def _call_on_same_line(self, pos: int) -> bool:
        """Is the name ending at pos certainly called (`cat(`, `(torch.cat)(`)?
        Outside brackets a line break ends the statement, so only this line counts."""
        text, n = self.text, len(self.text)
        while pos < n and text[pos] in " \t\f)":
            pos += 1
        return pos < n and text[pos] == "("

    # --- stage 3: the token before the callee, the target ------------------------------

    def _target(self, start: int):
        """(N, offset of N's line) if the name starting at `start` (a callee, or
        an alias's value) is the value, or a conditional arm, assigned to the
        single name N; None if it is not; _Keep where the text does not say."""
        text = self.text
        pos, crossed = self._skip_back(start, 0)
        groups = 0  # opening parentheses around the callee (grouping, if this is a finding)
        # The callee's dotted prefix and opening parentheses.
        while pos > 0 and text[pos - 1] in ".(":
            if text[pos - 1] == "(":
                groups += 1
                pos, crossed = self._skip_back(pos - 1, crossed)
                continue
            pos, crossed = self._skip_back(pos - 1, crossed)
            if pos > 0 and text[pos - 1] in ")]":
                # `f(x).cat`, `xs[0].cat` resolve to nothing; `(torch).cat` does.
                line_start = text.rfind("\n", 0, pos - 1) + 1
                opening = _group_start(text[line_start:pos])
                if opening is None:
                    raise _Keep
                opening += line_start
                before = opening
                while before > 0 and text[before - 1] in " \t\f":
                    before -= 1
                if before > 0 and (_is_word_char(text[before - 1]) or text[before - 1] in ")]"):
                    return None
                raise _Keep
            word_start = pos
            while word_start > 0 and _is_word_char(text[word_start - 1]):
                word_start -= 1
            if word_start == pos:
                return None  # `x[0].cat`, `"s".cat`: resolves to nothing
            pos, crossed = self._skip_back(word_start, crossed)
        if pos == 0:
            return None
        if text[pos - 1] == "=":
            if pos >= 2 and text[pos - 2] in _AUGMENTED:
                return None
            line_start = _joined_start(text, text.rfind("\n", 0, pos - 1) + 1)  # lines continued by `\\`
            before = text[line_start:pos - 1].replace("\\\n", " ")
            lexed = _lex_line(before)
            if lexed is None or lexed[0] < 0:
                raise _Keep  # the `=` closes brackets opened on an earlier line
            match = _TARGET_LINE.match(before)
            if match:
                return match.group(1), line_start, groups
            annotated = _ANNOTATED.match(before)
            if annotated and annotated.group(1) not in _KEYWORDS and ";" not in before:
                return annotated.group(1), line_start, groups
            if _ANNOTATED_ATTRIBUTE.match(before):
                return None
            if ":" in before or ";" in before or not before.strip(" \t\f("):
                raise _Keep  # a one-line clause, `;`, or a target on an earlier line
            return None
        word_start = pos
        while word_start > 0 and _is_word_char(text[word_start - 1]):
            word_start -= 1
        if text[word_start:pos] == "else":
            return self._conditional_target(word_start, groups)
        return None

    def _conditional_target(self, else_at: int, groups: int):
        """The target of `N = X if T else CALL` written on one line (lines
        continued by `\\` joined); elsewhere (inside brackets opened on an
        earlier line) the file is kept."""
        text = self.text
        line_start = _joined_start(text, text.rfind("\n", 0, else_at) + 1)
        before = text[line_start:else_at].replace("\\\n", " ")
        lexed = _lex_line(before)
        if lexed is None or lexed[0] < 0:
            raise _Keep
        match = _CONDITIONAL_TARGET.match(before)
        if match and match.group(1) not in _KEYWORDS:
            # The arms and test may hold parentheses: the groups around the
            # call are counted from the `=`.
            return match.group(1), line_start, groups + max(lexed[0], 0)
        if _NOT_A_VALUE.match(before):
            return None  # `return x if c else torch.cat(...)`: no assignment
        raise _Keep

    def _skip_back(self, pos: int, crossed: int):
        """Move pos back over blanks, `\\`, line breaks and comments; returns
        (new pos, lines crossed so far)."""
        text = self.text
        while True:
            while pos > 0 and text[pos - 1] in _GAP:
                pos -= 1
            if pos == 0 or text[pos - 1] != "\n":
                return pos, crossed
            crossed += 1
            if crossed > LINES_BACK:
                raise _Keep
            line_end = pos - 1
            line_start = text.rfind("\n", 0, line_end) + 1
            lexed = _lex_line(text[line_start:line_end])
            if lexed is None:
                raise _Keep  # a string that does not close on this line
            pos = line_start + lexed[1]

    # --- stage 4: in a loop body --------------------------------------------------------

    def _in_loop_body(self, target, aliases: set) -> bool:
        """Is N's statement inside a loop of its own scope, and could N carry
        over from one iteration to the next?

        Walks back over the lines above N's, keeping the bracket depth at the
        start of each line (depth at N's line is 0: a statement starts there)
        and the smallest indentation of the statements passed. A line starting
        at depth 0, not continued from a line ending in `\\`, starts a
        statement; one indented less than every statement passed is a header
        of a block holding N: a loop header answers yes, a `def`/`class`
        header no. Brackets and `#` are read per line with its strings lexed;
        past a line whose strings do not open and close on it (a triple
        quote, a string continued by `\\`), the walk only looks for a line
        starting with `for`/`while` indented less than the statements passed.

        Where N's statement sits directly in the body of a `for` loop whose
        targets include N, or next to a statement of the same body (lines all
        read as code) that assigns N something with no concatenation's name,
        `if` or `else` in it (`x = x.view(...)`), N restarts on every
        iteration: the rule reports nothing there."""
        name, line_start, _ = target
        text = self.text
        if line_start >= 2 and text[line_start - 2] == "\\":
            raise _Keep  # a continuation line: its indentation is not its statement's
        if self.lines is None:
            self.lines = text.split("\n")
            self.lexed = {}
        lines = self.lines
        index = text.count("\n", 0, line_start)
        if lines[index].strip(" \t\f") == "\\":
            raise _Keep  # a line of only `\\` starts the statement: its indentation does not count
        own = limit = _indent(lines[index])
        depth, trusted = 0, True
        unsure = False  # passed a less indented line that may be a block header
        siblings = []  # statements of N's own block above it
        for k in range(index - 1, -1, -1):
            line = lines[k]
            if trusted:
                lexed = self._lexed(k)
                if lexed is None:
                    trusted = False
                else:
                    depth -= lexed[0]
            code = line.lstrip(" \t\f")
            if not code or code[0] == "#":
                continue
            if code == "\\":
                unsure = True  # a line of only `\\`: how Python reads the next line's indentation is subtle
                continue
            level = len(line) - len(code)
            if "\f" in line[:level]:
                level = _indent(line)
            continuation = k > 0 and self._continued(k - 1)
            if continuation and _LOOP_KEYWORD.match(code):
                return True  # a loop header continued from the line above: its indentation is not its own
            statement = trusted and depth == 0 and not continuation
            if level >= limit:
                if statement and level == own and limit == own:
                    siblings.append(k)
                continue
            if _LOOP_KEYWORD.match(code):
                if statement and limit == own and trusted and not unsure \
                        and self._restarts(name, k, siblings, index, aliases):
                    return False
                return True  # a loop header (or a comprehension's line: kept too)
            if not statement:
                continue  # inside brackets or continued from the line above: no block header
            if _SCOPE_KEYWORD.match(code):
                return False
            limit = level
        return False

    def _lexed(self, k: int):
        if k not in self.lexed:
            self.lexed[k] = _lex_line(self.lines[k])
        return self.lexed[k]

    def _continued(self, k: int) -> bool:
        """Does line k continue onto the next with a `\\` of code (one ending a
        comment continues nothing)? Taken as yes where a string on it does not
        close on it."""
        return _code_backslash_end(self.lines[k], self._lexed(k)) is not False

    def _restarts(self, name: str, header: int, siblings: list, index: int, aliases: set) -> bool:
        """Is N, growing in the body of the loop whose header is line `header`,
        rebound on every iteration: a `for` target, or assigned by a
        statement of the same body that cannot be another growth?"""
        lines = self.lines
        code = lines[header].lstrip(" \t\f")
        targets = _FOR_TARGETS.match(code)
        if targets and "[" not in targets.group(1) and name in _WORD.findall(targets.group(1)):
            return True  # N is a target of the loop (not in `x[N]`, which rebinds nothing named N)
        own = _indent(lines[index])
        candidates = list(siblings)
        # Statements after N's, in the same body, while the lines read as code.
        depth, k = 0, index
        while k < len(lines):
            lexed = self._lexed(k)
            if lexed is None:
                break
            if k > index:
                code = lines[k].lstrip(" \t\f")
                if code and code[0] != "#" and depth == 0 and not self._continued(k - 1):
                    level = _indent(lines[k])
                    if level < own:
                        break
                    if level == own:
                        candidates.append(k)
            depth += lexed[0]
            k += 1
        words = set(_BASE) | {"append", "if", "else"} | aliases
        for k in candidates:
            line = lines[k]
            if _ASSIGNS.match(line) and _ASSIGNS.match(line).group(1) == name \
                    and not words & set(_WORD.findall(line)) and self._lexed(k) == (0, len(line)) \
                    and not self._continued(k):  # the whole statement is on this line
                return True
        return False

    # --- stage 5: N among the joined values ---------------------------------------------

    def _bare_in_arguments(self, name: str, paren: int, direct: bool) -> int | None:
        """Is `name` a bare value in the call's arguments: an element of the
        list or tuple display passed to it (through grouping parentheses
        only), or, for `append` and for aliases (whose kind is unknown here),
        also an argument itself? Read forward from the call's `(` with
        strings and comments skipped; the arguments must close within WINDOW.
        Returns where the call ends (just after its `)`), or None."""
        text = self.text
        limit = min(len(text), paren + WINDOW)
        n = len(name)
        stack = []  # per open bracket: C call, P grouping, L display, S subscript, D braces
        prev = ""  # the last character of code before pos
        found = False
        pos = paren
        while pos < limit:
            c = text[pos]
            if c in " \t\f\n\\":
                pos += 1
                continue
            if c == "#":
                newline = text.find("\n", pos)
                pos = limit if newline < 0 else newline
                continue
            if c in "'\"":
                pos = _string_end(text, pos, limit)
                prev = c
                continue
            if c in "([{":
                follows_value = _is_word_char(prev) or prev in ")]'\""
                if not stack:
                    kind = "C"
                elif c == "(":
                    kind = "C" if follows_value else "P"
                elif c == "[":
                    kind = "S" if follows_value else "L"
                else:
                    kind = "D"
                stack.append(kind)
            elif c in ")]}":
                stack.pop()
            elif c == name[0] and text.startswith(name, pos) and not _is_word_char(prev[-1:] or " ") \
                    and not _is_word_char(text[pos - 1]) \
                    and not (pos + n < len(text) and _is_word_char(text[pos + n])):
                path = "".join(stack[1:])
                joined = path[:1] in ("L", "P") and path[1:].strip("P") == ""
                if prev in "[(,=" and (joined or (direct and path.strip("P") == "")) \
                        and self._next_code(pos + n, limit) in (",", "]", ")"):
                    found = True
                prev = name[-1]
                pos += n
                continue
            prev = c
            pos += 1
            if not stack:
                return pos if found else None
        raise _Keep

    def _ends_value(self, pos: int, groups: int) -> bool:
        """Is the call ending at pos the whole value (or a conditional arm)?
        After it, and the `groups` parentheses closing around it, comes the
        end of the statement (a line break outside brackets, `;`, a comment,
        the end) or `if`/`else`; `.reshape(...)`, `[0]`, `+ x`, `, y` mean
        the value is something else. Line breaks count as blanks only inside
        those parentheses."""
        text, n = self.text, len(self.text)
        while pos < n:
            c = text[pos]
            if c in " \t\f" or text.startswith("\\\n", pos):
                pos += 2 if c == "\\" else 1
            elif c == "#":
                if groups <= 0:
                    return True
                newline = text.find("\n", pos)
                pos = n if newline < 0 else newline
            elif c == "\n":
                if groups <= 0:
                    return True
                pos += 1
            elif c == ")":
                groups -= 1
                pos += 1
            elif c == ";":
                return True
            else:
                word = _WORD.match(text, pos)
                return bool(word) and word.group() in ("if", "else")
        return True

    def _next_code(self, pos: int, limit: int) -> str:
        text = self.text
        while pos < limit:
            c = text[pos]
            if c == "#":
                newline = text.find("\n", pos)
                pos = limit if newline < 0 else newline
            elif c in " \t\f\n\\":
                pos += 1
            else:
                return c
        return ""


_QUOTE_OR_BRACKET = re.compile(r"[()\[\]{}'\"#]")


def _joined_start(text: str, line_start: int) -> int:
    """The start of the logical line holding the physical line at
    `line_start`: back over lines that end in a `\\` of code (one ending a
    comment, `# \\`, continues nothing); _Keep where a string on such a line
    does not close on it."""
    while line_start >= 2 and text[line_start - 2] == "\\":
        above = text.rfind("\n", 0, line_start - 1) + 1
        line = text[above:line_start - 1]
        continues = _code_backslash_end(line, _lex_line(line))
        if continues is None:
            raise _Keep
        if not continues:
            break  # the `\\` is in a comment
        line_start = above
    return line_start


def _code_backslash_end(line: str, lexed) -> bool | None:
    """Does `line` end in a `\\` of code, continuing onto the next line (one
    ending a comment continues nothing)? None where a string on it does not
    close on it. `lexed`: _lex_line(line)."""
    if not line.endswith("\\"):
        return False
    return None if lexed is None else lexed[1] == len(line)


def _lex_line(line: str):
    """(opening minus closing brackets, where the code ends: at its comment
    or the line's end) of one line read as code, or None when a string on it
    does not open and close on it."""
    m = _QUOTE_OR_BRACKET.search(line)
    if m is None:
        return 0, len(line)
    balance, pos, n = 0, 0, len(line)
    while m is not None:
        c = m.group()
        pos = m.end()
        if c == "#":
            return balance, pos - 1
        if c in "([{":
            balance += 1
        elif c in ")]}":
            balance -= 1
        else:
            quote = c * 3 if line.startswith(c * 3, pos - 1) else c
            pos += len(quote) - 1
            while True:
                if pos >= n:
                    return None
                if line[pos] == "\\":
                    pos += 2
                elif line.startswith(quote, pos):
                    pos += len(quote)
                    break
                else:
                    pos += 1
        m = _QUOTE_OR_BRACKET.search(line, pos)
    return balance, n


def _string_end(text: str, pos: int, limit: int) -> int:
    """Where the string literal whose quote is at pos ends (reading forward
    from code). f-strings (whose fields may hold the same quote from Python
    3.12 on) and strings running past `limit` keep the file."""
    prefix = pos
    while prefix > 0 and text[prefix - 1] in "rRbBuUfF":
        prefix -= 1
    if "f" in text[prefix:pos].lower() and not (prefix > 0 and _is_word_char(text[prefix - 1])):
        raise _Keep
    c = text[pos]
    quote = c * 3 if text.startswith(c * 3, pos) else c
    pos += len(quote)
    while pos < limit:
        if text[pos] == "\\":
            pos += 2
        elif text.startswith(quote, pos):
            return pos + len(quote)
        elif text[pos] == "\n" and len(quote) == 1:
            raise _Keep
        else:
            pos += 1
    raise _Keep


def _group_start(line: str) -> int | None:
    """Where the bracket closing `line` (its last character) opens, when it
    opens on the same line and the line reads as code up to it; else None."""
    stack, pos, n = [], 0, len(line)
    while (m := _QUOTE_OR_BRACKET.search(line, pos)) is not None:
        c, pos = m.group(), m.end()
        if c == "#":
            return None
        if c in "([{":
            stack.append(pos - 1)
        elif c in ")]}":
            if not stack:
                return None
            opening = stack.pop()
            if pos == n:
                return opening
        else:
            quote = c * 3 if line.startswith(c * 3, pos - 1) else c
            pos += len(quote) - 1
            while True:
                if pos >= n:
                    return None
                if line[pos] == "\\":
                    pos += 2
                elif line.startswith(quote, pos):
                    pos += len(quote)
                    break
                else:
                    pos += 1
    return None


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_" or c >= "\x80"


def _indent(line: str) -> int:
    """Columns of indentation, counted from the last form feed (which resets it)."""
    code = line.lstrip(" \t\f")
    leading = line[:len(line) - len(code)]
    return len(leading) - leading.rfind("\f") - 1

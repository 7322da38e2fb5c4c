"""ALC001 programs in every spelling the grammar allows, for the prefilter's
differential tests (tests/test_prefilter.py) and bench/prefilter_fuzz.py.

`program(draw)` builds a module with the pattern (allocation, merge call,
rebinding in a loop), choosing the allocator's spelling (imports, aliases,
star imports, configured allocators, and the spellings the rule is being
extended to), the loop, the first iteration, the merge call and the
rebinding; then `respell` rewrites the text between tokens: blanks, tabs and
form feeds, backslash continuations, line breaks and comments inside
brackets (comments holding `#`, quotes, `=` and code), statements joined
with `;`, fullwidth letters in identifiers (NFKC), CR or CRLF line ends, and
strings holding look-alike code.
"""
from __future__ import annotations

import io
import keyword
import random
import string
import tokenize
from dataclasses import dataclass

from alloc_lint.config import DEFAULT_ALLOCATORS, Config

# (import lines at module level, lines at the top of the function, callee)
ALLOCATOR_SPELLINGS = [
    (["import torch"], [], "torch.empty_like"),
    (["import torch as th"], [], "th.empty_like"),
    (["import torch"], [], "(torch).empty_like"),
    (["import torch"], [], "(torch.empty_like)"),
    (["import torch"], [], "((torch)).empty_like"),
    (["from torch import empty_like"], [], "empty_like"),
    (["from torch import empty_like as e"], [], "e"),
    (["from torch import (\n    zeros_like,\n    empty_like as make,\n)"], [], "make"),
    (["from torch import *"], [], "empty_like"),
    (["import torch", "alloc = torch.empty_like"], [], "alloc"),
    (["import torch", "first = (torch.empty_like)", "alloc = first"], [], "alloc"),
    ([], ["import torch"], "torch.empty_like"),
    ([], ["from torch import empty_like as e"], "e"),
    (["import torch"], ["alloc = torch . empty_like"], "alloc"),
    (["import torch.nn", "import torch"], [], "torch.empty_like"),
    (["from mylib import ops"], [], "ops.make_buffer"),  # extra-allocators
    (["import mylib.ops as mo"], [], "mo.make_buffer"),
    (["from mylib.ops import make_buffer as mb"], [], "mb"),
]
EXTRA_ALLOCATOR = "mylib.ops.make_buffer"
# Spellings the rule does not resolve yet (issue 10): the predicate keeps them.
FUTURE_SPELLINGS = ["annotated", "empty_shape", "empty_size", "new_empty", "input_keyword"]

NAMES = ["acc", "output", "o", "out", "x", "state", "résumé", "ακ", "a·b", "_", "acc2x",
         "tmp", "buf", "output_tmp", "t", "scratch", "new", "y"]
FULLWIDTH = {c: chr(ord(c) + 0xFEE0) for c in string.ascii_letters + string.digits}
LOOKALIKES = [
    '"tmp = torch.empty_like(acc)"',
    "'acc = tmp  # #'",
    '"#"',
    "'a,b=#'",
    '"""\nx = (\n    # acc = tmp\n    torch.empty_like(acc)\n"""',
    "r'\\\\'",
    '"\\\\"',
    "'( # ,x ='",
]
COMMENTS = ["# c", "# acc = tmp", "# (", "# ) ] }", "# x = 'y' # z", '# " \'', "# =", "# \\", "#", "# tmp,"]


@dataclass
class Program:
    text: str
    config: Config
    future: bool  # written in a spelling the rule does not resolve yet
    spelling: str


def _indent(lines: list[str], unit: str) -> list[str]:
    return [unit + line if line else line for line in lines]


class Choices:
    """Where the choices come from: hypothesis (`Choices.drawing(data)`,
    shrinkable) or a seeded random.Random (bench/prefilter_fuzz.py)."""

    def __init__(self, choice, integer):
        self.choice, self.integer = choice, integer

    @classmethod
    def drawing(cls, data):
        from hypothesis import strategies as st
        return cls(lambda options: data.draw(st.sampled_from(options)),
                   lambda lo, hi: data.draw(st.integers(lo, hi)))

    @classmethod
    def seeded(cls, rnd: random.Random):
        return cls(rnd.choice, rnd.randint)

    def boolean(self) -> bool:
        return self.choice([False, True])


def program(choose: Choices) -> Program:
    """A module with an ALC001 pattern."""
    pick, draw_int = choose.choice, choose.integer
    pool = list(NAMES)
    names = []
    for _ in range(4):
        names.append(pick(pool))
        pool.remove(names[-1])
    acc, tmp, acc2, tmp2 = names
    two = choose.boolean()
    future = pick([None] * 6 + FUTURE_SPELLINGS)
    module_imports, function_imports, callee = pick(ALLOCATOR_SPELLINGS)
    unit = pick(["    ", "\t", "  ", " \t"])

    def allocation(t: str, a: str) -> str:
        template = pick([a, f"({a})"])
        if future == "annotated":
            annotation = pick(["torch.Tensor", "Tensor", "Optional[torch.Tensor]", '"Tensor"', "(\n  Tensor)"])
            return f"{t}: {annotation} = {callee}({template})"
        if future == "empty_shape":
            return f"{t} = torch.empty({a}.shape, dtype={a}.dtype, device={a}.device)"
        if future == "empty_size":
            return f"{t} = torch.empty({a}.size(), dtype={a}.dtype)"
        if future == "new_empty":
            receiver = pick([a, f"({a})", f"{a}[0]", f"{a}.data"])
            return f"{t} = {receiver}.new_empty({a}.shape)"
        if future == "input_keyword":
            return f"{t} = {callee}(input={template})"
        return f"{t} = {callee}({template})"

    extra_imports = ["import torch"] if future in ("empty_shape", "empty_size") else []
    loop_kind = pick(["for", "while", "async for"])
    merge_kind = pick(["known", "positional", "out"])
    accs, tmps = ([acc, acc2], [tmp, tmp2]) if two else ([acc], [tmp])
    allocs = [allocation(t, a) for t, a in zip(tmps, accs)]
    if merge_kind == "known" and two:
        merge = (f"merge_attn_states(output={tmp}, output_lse={tmp2}, prefix_output={acc}, "
                 f"prefix_lse={acc2}, suffix_output=c, suffix_lse=cl)")
    elif merge_kind == "known":
        merge = f"merge_state({acc}, c, out={tmp})"
        if loop_kind == "async for" and choose.boolean():
            merge = "await " + merge
    elif merge_kind == "positional":
        merge = f"combine({', '.join(tmps)}, {', '.join(accs)}, c)"
    else:
        merge = f"combine({', '.join(accs)}, c, out={tmp}" + (f", out_lse={tmp2})" if two else ")")
    rebind_kind = pick(["plain", "tuple", "parens", "list", "separate", "trailing"])
    if two and rebind_kind in ("tuple", "plain"):
        rebinds = [f"{acc}, {acc2} = {tmp}, {tmp2}"]
    elif two and rebind_kind == "parens":
        rebinds = [f"({acc}, {acc2}) = ({tmp}, {tmp2})"]
    elif two and rebind_kind == "list":
        rebinds = [f"[{acc}, {acc2}] = {tmp}, {tmp2}"]
    elif two and rebind_kind == "trailing":
        rebinds = [f"({acc}, {acc2},) = {tmp}, {tmp2},"]
    elif two:
        rebinds = [f"{acc} = {tmp}", f"{acc2} = {tmp2}"]
    elif rebind_kind == "parens":
        rebinds = [f"({acc}) = ({tmp})"]
    elif rebind_kind == "trailing":
        rebinds = [f"{acc}, = {tmp},"]
    elif rebind_kind == "list":
        rebinds = [f"[{acc}] = [{tmp}]"]
    else:
        rebinds = [f"{acc} = {tmp}"]
    deletes = [f"del {', '.join(tmps)}"] if choose.boolean() else []
    noise = [f"s = {pick(LOOKALIKES)}" for _ in range(draw_int(0, 2))]
    pattern = _join_statements(noise + allocs + [merge] + rebinds + deletes, choose)
    first = pick(["before", "none_continue", "if_else", "one_line_else"])
    seeds = [f"{a} = outs[0].clone()" for a in accs]
    loop_body: list[str]
    if first == "before":
        before_loop, loop_body = seeds, pattern
    elif first == "none_continue":
        before_loop = [f"{a} = None" for a in accs]
        loop_body = [f"if {acc} is None:"] + _indent([f"{a} = c" for a in accs] + ["continue"], unit) + pattern
    elif first == "if_else":
        before_loop = [f"{a} = None" for a in accs]
        loop_body = ([f"if {acc} is None:"] + _indent([f"{a} = c" for a in accs], unit) + ["else:"]
                     + _indent(pattern, unit))
    else:
        before_loop = [f"{a} = None" for a in accs]
        loop_body = [f"if {acc} is None: " + "; ".join(f"{a} = c" for a in accs), "else: " + "; ".join(pattern)] \
            if "\n" not in "".join(pattern) else ["if 1:"] + _indent(pattern, unit)
    if loop_kind == "while":
        header = ["i = 0", "while i < len(outs):"]
        loop_body = ["c, cl = outs[i], lses[i]", "i += 1"] + loop_body
    elif loop_kind == "async for":
        header = ["async for c, cl in pairs(outs, lses):"]
    else:
        header = ["for c, cl in zip(outs, lses):"]
    function = _join_statements(function_imports + before_loop + header + _indent(loop_body, unit), choose)
    definition = "async def" if loop_kind == "async for" else "def"
    scope = "function" if loop_kind == "async for" or function_imports else pick(["function", "module", "method"])
    if scope == "module":  # a loop at module level
        lines = module_imports + extra_imports + ["outs, lses = [], []"] + function
    elif scope == "method":
        lines = (module_imports + extra_imports + ["", "class Merger:", unit + "scale = 1", "",
                                                   unit + f"{definition} run(self, outs, lses):"]
                 + _indent(_indent(function + [f"return {', '.join(accs)}"], unit), unit))
    else:
        lines = (module_imports + extra_imports + ["", "", f"{definition} run(outs, lses):"]
                 + _indent(function + [f"return {', '.join(accs)}"], unit))
    text = "\n".join(lines) + "\n"
    config = Config(allocators=DEFAULT_ALLOCATORS + (EXTRA_ALLOCATOR,))
    return Program(text, config, future is not None, f"{callee} / {future} / {first} / {rebind_kind} / {scope}")


def _join_statements(lines: list[str], choose: Choices) -> list[str]:
    """Join some neighbouring simple statements of one block with `;`."""
    out: list[str] = []
    for line in lines:
        simple = not line.startswith((" ", "\t")) and not line.rstrip().endswith(":") \
            and "\n" not in line and not line.startswith(("if ", "else", "for ", "while ", "async ", "return"))
        if out and simple and out[-1] != "" and _simple(out[-1]) and choose.integer(0, 3) == 0:
            out[-1] = out[-1] + choose.choice(["; ", ";", " ;  "]) + line
        else:
            out.append(line)
    return out


def _simple(line: str) -> bool:
    return not line.startswith((" ", "\t")) and not line.rstrip().endswith(":") and "\n" not in line \
        and not line.startswith(("if ", "else", "for ", "while ", "async ", "return", "import", "from"))


# --- respelling between tokens --------------------------------------------------------

_SKIP = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT,
         tokenize.ENDMARKER, tokenize.ENCODING}
_SKIP |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}


def respell(text: str, rnd: random.Random, rate: float = 0.3) -> str:
    """Rewrite the gaps between tokens (and identifiers, and line ends) in
    ways the grammar allows; the result parses to the same tree."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    offset = lambda pos: starts[pos[0] - 1] + pos[1]  # noqa: E731
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), on the original text
    depth = 0
    for a, b in zip(tokens, tokens[1:]):
        if a.type == tokenize.OP and a.string in "([{":
            depth += 1
        elif a.type == tokenize.OP and a.string in ")]}":
            depth -= 1
        if a.type in _SKIP or b.type in _SKIP or rnd.random() > rate:
            continue
        if tokenize.ERRORTOKEN in (a.type, b.type) or (a.end == b.start and a.type == b.type == tokenize.NAME):
            continue  # `a·b` is one name to Python, three tokens to tokenize.py
        at = offset(a.end)
        choices = ["blank", "continuation"] + (["comment", "newline"] * 2 if depth > 0 else [])
        kind = rnd.choice(choices)
        blanks = "".join(rnd.choice(" \t\f") for _ in range(rnd.randint(0, 2)))
        if kind == "blank":
            edits.append((at, at, blanks or " "))
        elif kind == "continuation":
            edits.append((at, at, rnd.choice([" ", ""]) + "\\\n" + blanks))
        elif kind == "comment":
            edits.append((at, at, "  " + rnd.choice(COMMENTS) + "\n" + blanks))
        else:
            edits.append((at, at, "\n" + blanks))
    significant = [t for t in tokens if t.type not in (tokenize.NL, tokenize.COMMENT)]
    for before, tok in zip(significant, significant[1:]):  # at line ends: comments, comment lines, `;`
        if tok.type == tokenize.NEWLINE and tok.string and rnd.random() < rate / 3:
            at = offset(tok.start)
            kind = rnd.choice(["comment", "comment line", "blank line", "semicolon"])
            if kind == "comment":
                edits.append((at, at, "  " + rnd.choice(COMMENTS)))
            elif kind == "comment line":
                indent = rnd.choice(["", " ", "\t"]) * rnd.randint(0, 9)
                edits.append((at + len(tok.string), at + len(tok.string), indent + rnd.choice(COMMENTS) + "\n"))
            elif kind == "blank line":
                edits.append((at + len(tok.string), at + len(tok.string), rnd.choice(["\n", " \n", "\t\f\n"])))
            elif before.string != ":" and before.type != tokenize.NEWLINE:
                edits.append((at, at, rnd.choice([";", " ;"])))
    for tok in tokens:  # fullwidth letters in some identifiers (Python compares them after NFKC)
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string) and tok.string.isascii() \
                and rnd.random() < rate / 4:
            spelled = "".join(FULLWIDTH.get(c, c) if rnd.random() < 0.5 else c for c in tok.string)
            if spelled[0].isdigit():
                continue
            edits.append((offset(tok.start), offset(tok.end), spelled))
    out, last = [], 0
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < last:
            continue
        out.append(text[last:start])
        out.append(new)
        last = end
    out.append(text[last:])
    result = "".join(out)
    if rnd.random() < rate:  # form feeds at the start of some lines
        result = "".join(("\f" + line) if line.strip() and rnd.random() < rate else line
                         for line in result.splitlines(keepends=True))
    ending = rnd.choice(["\n", "\n", "\r\n", "\r"])
    return result.replace("\n", ending) if ending != "\n" else result

"""Property tests for the ALC001 fixes over generated variants of the pattern.

A strategy writes the program TEXT: random names for the accumulator, its
log-sum-exp and their temporaries; one accumulator or a paired output + lse;
four first-iteration styles (`if acc is None:` inside the loop; a counter and
`continue`; seeded before the loop from the first chunk, by arithmetic,
`.clone()`, an opaque call or the caller's tensor itself; seeded with
`torch.zeros_like`); `for` or `while`; plain or tuple rebinding; keyword
(`out=`/`output=`) or positional out-buffer; optional `del`; optional work
after the loop (where the fix must release its scratch buffers); unique marker
comments and blank lines sprinkled around and inside the loop; 4-space or tab
indentation; LF or CRLF line endings.

For every program, the safe and the unsafe fix must: parse, keep every marker
comment exactly once, keep line endings and indentation style, keep every line
that is not one of the pattern's statements verbatim and in order, leave no
ALC001, be idempotent; and the rewritten program, run on the same random inputs
as the original, must give bitwise-equal results, leave the caller's tensors
alone, and allocate a constant number of buffers however many chunks it merges
(the swap one per accumulator, ping-pong two: its second at the second merge).
"""
from __future__ import annotations

import ast
import builtins
import keyword
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from alloc_lint import check_source, fix_source  # noqa: E402

from runtime import TRUSTED, run, same  # noqa: E402

H, D = 3, 4


# Names the generated programs use for themselves (PRELUDE's too).
RESERVED = {
    "torch", "run", "outs", "lses", "i", "seen", "merged", "prev", "fold", "first_chunk",
    "merge", "merge_attn_states", "merge_strided", "out", "output", "prefix", "suffix",
    "out_lse", "output_lse", "prefix_lse", "suffix_lse", "prefix_output", "suffix_output",
    "match", "case", "type", "_",
} | set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)

identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: s not in RESERVED and "alt" not in s and not s.startswith("keep"))


@dataclass
class Generated:
    text: str
    pattern_lines: set = field(default_factory=set)  # 0-based indices of the pattern's statements
    # 0-based indices of lines between the group's allocations: the fix moves them
    # into `if T is None:` with the allocations, so they may only change indentation.
    moved_lines: set = field(default_factory=set)
    alloc_lines: list = field(default_factory=list)  # 1-based line numbers of the allocations
    markers: list = field(default_factory=list)
    accumulators: int = 1
    style: str = ""
    safe_form: str = ""
    unsafe_form: str = ""
    setup: int = 0  # allocations outside the merge, per call
    first_chunk_merged: bool = False  # merges = n if True else n - 1
    unit: str = "    "
    crlf: bool = False
    released: bool = False  # work follows the loop: the fix sets its buffers to None there


class _Writer:
    def __init__(self, draw, unit, comments):
        self.draw, self.unit, self.comments = draw, unit, comments
        self.lines: list[tuple[str, bool]] = []  # (text, is a pattern statement)
        self.markers: list[str] = []

    def marker(self) -> str:
        m = f"# keep-{len(self.markers) + 1}"
        self.markers.append(m)
        return m

    def fill(self, level: int):
        """Optional blank lines and own-line marker comments."""
        if not self.comments:
            return
        for _ in range(self.draw(st.integers(0, 2))):
            kind = self.draw(st.sampled_from(["blank", "comment", "comment", "comment0"]))
            if kind == "blank":
                self.lines.append(("", False))
            elif kind == "comment":
                self.lines.append((self.unit * level + self.marker(), False))
            else:
                self.lines.append((self.marker(), False))

    def stmt(self, level: int, text: str, pattern: bool = False, trailing: bool = True) -> int:
        if trailing and self.comments and self.draw(st.booleans()):
            text += "  " + self.marker()
        self.lines.append((self.unit * level + text, pattern))
        return len(self.lines)  # 1-based line number


@st.composite
def programs(draw) -> Generated:
    paired = draw(st.booleans())
    names = draw(st.lists(identifiers, min_size=6, max_size=6, unique=True))
    acc, tmp, acc_lse, tmp_lse, chunk, chunk_lse = names
    style = draw(st.sampled_from(["if_none", "continue", "seeded", "zeros"]))
    seed_kind = draw(st.sampled_from(["arith", "clone", "call", "param"])) if style == "seeded" else None
    loop_kind = draw(st.sampled_from(["for", "while"]))
    tuple_rebind = draw(st.booleans())
    call_kind = draw(st.sampled_from(["out", "output", "positional"]))
    multiline_call = draw(st.booleans())
    del_kind = draw(st.sampled_from(["none", "all", "first", "separate", "with_chunk"]))
    tail = draw(st.booleans())  # an unrelated statement after the pattern
    work_after = draw(st.booleans())  # work after the loop: the fix releases its scratch buffers there
    decoy = draw(st.booleans())  # `{tmp}_alt` already names something: ping-pong must pick another name
    comments = draw(st.booleans())
    unit = draw(st.sampled_from(["    ", "\t"]))
    crlf = draw(st.booleans())
    # A helper indented otherwise (a tab in a space-indented file, two spaces in a tab-indented one),
    # first in the file: LibCST takes its module default indentation from it.
    odd_helper = draw(st.booleans())

    g = Generated("", accumulators=2 if paired else 1, style=style, unit=unit, crlf=crlf)
    w = _Writer(draw, unit, comments)
    accs = [acc, acc_lse] if paired else [acc]
    tmps = [tmp, tmp_lse] if paired else [tmp]
    chunks = [chunk, chunk_lse] if paired else [chunk]
    counter = tail  # a `merged` counter, returned
    keep_prev = tuple_rebind and not paired  # `acc, prev = tmp, chunk`: plain names on both sides

    # --- helpers at module level ---
    w.stmt(0, "import torch", trailing=False)
    w.fill(0)
    if odd_helper:
        w.lines.append(("", False))
        w.lines.append(("def odd_helper():", False))
        w.lines.append((("  " if unit == "\t" else "\t") + "return 0", False))
    if not paired:
        first = "output" if call_kind == "output" else "out"
        w.lines.append(("", False))
        w.stmt(0, f"def fold({first}, prefix, suffix):")
        w.stmt(1, f"torch.add(suffix, prefix, alpha=0.5, out={first})")
    if seed_kind == "call":
        w.lines.append(("", False))
        w.stmt(0, "def first_chunk(outs, lses):")
        w.stmt(1, "return outs[0] * 1.0, lses[0] * 1.0" if paired else "return outs[0] * 1.0")
    w.lines.append(("", False))
    w.fill(0)
    w.stmt(0, "def run(outs, lses):")

    # --- before the loop ---
    fresh = ["outs[{i}] * 1.0", "lses[{i}] * 1.0"][:len(accs)]
    direct = ["outs[{i}]", "lses[{i}]"][:len(accs)]
    if counter:
        w.stmt(1, "merged = 0")
    if keep_prev:
        w.stmt(1, "prev = None")
    if decoy:
        w.stmt(1, f"{tmp}_alt = len(outs)")
    if style == "if_none":
        w.stmt(1, f"{acc} = None")
    elif style == "continue":
        w.stmt(1, "seen = 0")
    elif style == "seeded":
        if seed_kind == "call":
            w.stmt(1, f"{', '.join(accs)} = first_chunk(outs, lses)" if paired else f"{acc} = first_chunk(outs, lses)")
        else:
            exprs = {"arith": fresh, "clone": ["outs[{i}].clone()", "lses[{i}].clone()"][:len(accs)],
                     "param": direct}[seed_kind]
            values = [e.format(i=0) for e in exprs]
            if paired and draw(st.booleans()):
                w.stmt(1, f"{acc}, {acc_lse} = {values[0]}, {values[1]}")
            else:
                for a, v in zip(accs, values):
                    w.stmt(1, f"{a} = {v}")
        g.setup = len(accs) if seed_kind == "clone" else 0
    else:
        w.stmt(1, f"{acc} = torch.zeros_like(outs[0])")
        if paired:
            w.stmt(1, f'{acc_lse} = torch.full_like(lses[0], float("-inf"))')
        g.setup = len(accs)
        g.first_chunk_merged = True
    start = 1 if style == "seeded" else 0
    w.fill(1)

    # --- the loop ---
    if loop_kind == "for":
        w.stmt(1, f"for i in range({start}, len(outs)):" if start else "for i in range(len(outs)):")
    else:
        w.stmt(1, f"i = {start}")
        w.fill(1)
        w.stmt(1, "while i < len(outs):")
    w.fill(2)
    chunk_exprs = fresh if style in ("if_none", "continue") else direct
    w.stmt(2, f"{', '.join(chunks)} = {', '.join(e.format(i='i') for e in chunk_exprs)}")
    if loop_kind == "while":
        w.stmt(2, "i += 1")
    w.fill(2)
    init = f"{', '.join(accs)} = {', '.join(chunks)}"
    if style == "if_none":
        w.stmt(2, f"if {acc} is None:")
        w.stmt(3, init)
        w.fill(2)
        w.stmt(2, "else:")
        level = 3
    elif style == "continue":
        w.stmt(2, "seen += 1")
        w.stmt(2, "if seen == 1:")
        w.stmt(3, init)
        w.stmt(3, "continue")
        level = 2
    else:
        level = 2
    w.fill(level)

    # --- the pattern: allocations, merge, rebindings, del ---
    order = draw(st.permutations(range(len(accs))))
    for k, j in enumerate(order):
        if k:
            before = len(w.lines)
            w.fill(level)
            g.moved_lines.update(range(before, len(w.lines)))
        g.alloc_lines.append(w.stmt(level, f"{tmps[j]} = torch.empty_like({accs[j]})", pattern=True))
    w.fill(level)
    if paired:
        func = {"out": "merge", "output": "merge_attn_states", "positional": "merge"}[call_kind]
        kw = {"out": ["out", "out_lse", "prefix", "prefix_lse", "suffix", "suffix_lse"],
              "output": ["output", "output_lse", "prefix_output", "prefix_lse", "suffix_output", "suffix_lse"]}
        values = [tmp, tmp_lse, acc, acc_lse, chunk, chunk_lse]
    else:
        func = "fold"
        kw = {"out": ["out", "prefix", "suffix"], "output": ["output", "prefix", "suffix"]}
        values = [tmp, acc, chunk]
    if call_kind == "positional":
        args = values
    else:
        args = [f"{k}={v}" for k, v in zip(kw[call_kind], values)]
        args = [args[p] for p in draw(st.permutations(range(len(args))))]
    if multiline_call:
        w.stmt(level, f"{func}(", trailing=False)
        for a in args:
            w.fill(level + 1)
            w.stmt(level + 1, a + ",")
        w.stmt(level, ")")
    else:
        w.stmt(level, f"{func}({', '.join(args)})")
    w.fill(level)
    rebind_order = draw(st.permutations(range(len(accs))))
    if tuple_rebind:
        targets = [accs[j] for j in rebind_order]
        values = [tmps[j] for j in rebind_order]
        if not paired:
            targets, values = [acc, "prev"], [tmp, chunk]
            if draw(st.booleans()):
                targets, values = targets[::-1], values[::-1]
        w.stmt(level, f"{', '.join(targets)} = {', '.join(values)}", pattern=True)
    else:
        for k, j in enumerate(rebind_order):
            if k:
                w.fill(level)
            w.stmt(level, f"{accs[j]} = {tmps[j]}", pattern=True)
    if del_kind != "none":
        w.fill(level)  # comments above a dropped `del` must survive it
        if del_kind == "all":
            dels = [", ".join(tmps[j] for j in order)]
        elif del_kind == "first":
            dels = [tmps[0]]
        elif del_kind == "separate":
            dels = list(tmps)
        else:
            dels = [", ".join([*tmps, chunk])]
        for k, d in enumerate(dels):
            if k:
                w.fill(level)
            w.stmt(level, f"del {d}", pattern=True)
    if tail:
        w.stmt(level, "merged += 1")
    w.fill(level)

    # --- after the loop ---
    w.fill(1)
    if work_after:
        w.stmt(1, f"scale = float({acc}.abs().sum()) + 1.0")
        w.stmt(1, f"{acc} = {acc} / scale")
    result = ", ".join(accs + (["merged"] if counter else []) + (["prev"] if keep_prev else [])
                       + ([f"{tmp}_alt"] if decoy else []))
    w.stmt(1, f"return {result}")
    w.fill(0)

    newline = "\r\n" if crlf else "\n"
    g.text = "".join(text + newline for text, _ in w.lines)
    g.pattern_lines = {i for i, (_, is_pattern) in enumerate(w.lines) if is_pattern}
    g.markers = w.markers
    g.accumulators = len(accs)
    g.released = work_after
    if style == "zeros":
        g.safe_form = g.unsafe_form = "swap"
    elif seed_kind in ("arith", "clone"):
        # Computed from the caller's tensors, which may require grad: the swap,
        # which writes merges into the seed and may return it, is unsafe.
        g.safe_form, g.unsafe_form = "pingpong", "swap"
    elif seed_kind == "param":
        g.safe_form = g.unsafe_form = "pingpong"
    else:
        g.safe_form, g.unsafe_form = "pingpong", "swap"
    return g


# --- checks ------------------------------------------------------------------------------

MARKER = re.compile(r"# keep-\d+(?!\d)")


def _check_text_properties(g: Generated, fixed: str):
    ast.parse(fixed)
    counts = Counter(MARKER.findall(fixed))
    for m in g.markers:
        assert counts[m] == 1, f"marker {m!r} appears {counts[m]} times"
    assert set(counts) == set(g.markers)
    if g.crlf:
        assert fixed.count("\n") == fixed.count("\r\n"), "mixed line endings"
    else:
        assert "\r" not in fixed
    lines = fixed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    if "def odd_helper" in lines[start]:
        start += 2
    for line in lines[start:]:
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        if g.unit == "\t":
            assert " " not in indent, f"space indentation in a tab-indented file: {line!r}"
        else:
            assert "\t" not in indent and len(indent) % 4 == 0, f"odd indentation: {line!r}"
    # Every line that is not one of the pattern's statements is kept verbatim, in order.
    original = g.text.splitlines(keepends=True)
    out = iter(fixed.splitlines(keepends=True))
    for i, line in enumerate(original):
        if i in g.pattern_lines:
            continue
        if i in g.moved_lines:
            ok = any(line.lstrip(" \t") == candidate.lstrip(" \t") for candidate in out)
        else:
            ok = any(line == candidate for candidate in out)
        assert ok, f"line lost, changed or out of order: {line!r}"


def _inputs(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    outs = [torch.randn(5, H, D, generator=gen) for _ in range(n)]
    lses = [torch.randn(5, H, generator=gen) for _ in range(n)]
    return outs, lses


def _snapshot(args):
    return [t.clone() for a in args for t in a]


SPARE = re.compile(r"^[ \t]*\w+_alt\d*(?: = \w+_alt\d*)* = None\r?$", re.MULTILINE)


NONES = re.compile(r"^[ \t]+(?:\w+ = )+None\r?$", re.MULTILINE)  # `a = b = None` lines


def _form(text: str) -> str:
    """Ping-pong keeps spare buffers under fresh `_alt` names, None before the loop."""
    return "pingpong" if SPARE.search(text) else "swap"


# No shrinking: each example runs six programs, and shrinking a failure took
# minutes; the failing program's full text is printed either way. Set
# ALLOC_LINT_PROPERTY_EXAMPLES to search longer.
@settings(max_examples=int(os.environ.get("ALLOC_LINT_PROPERTY_EXAMPLES", "100")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow], phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(g=programs(), n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_generated_pattern_fixes(g, n, seed):
    diagnostics = check_source(g.text, config=TRUSTED)
    assert [d.code for d in diagnostics] == ["ALC001"] * g.accumulators
    assert sorted(d.line for d in diagnostics) == sorted(g.alloc_lines)
    assert all(d.fixes and d.no_fix_reason is None for d in diagnostics), diagnostics

    merges = n if g.first_chunk_merged else n - 1
    args = _inputs(n, seed)
    expected, calls, _ = run(g.text, "run", *[list(a) for a in args])
    assert calls == g.setup + g.accumulators * merges, "the generator's allocation model is off"

    for unsafe in (False, True):
        result = fix_source(g.text, config=TRUSTED, unsafe_fixes=unsafe)
        fixed = result.text
        assert result.fixed == g.accumulators and result.remaining == []
        want = g.unsafe_form if unsafe else g.safe_form
        assert _form(fixed) == want, fixed
        # Added: `T = None` (ping-pong: and `T_alt = None`) before the loop, and the
        # release after it where work follows.
        added = len(NONES.findall(fixed)) - len(NONES.findall(g.text))
        assert added == (2 if want == "pingpong" else 1) + g.released, fixed
        assert {d.fix_for(unsafe).form for d in diagnostics} == {want}
        _check_text_properties(g, fixed)
        assert check_source(fixed, config=TRUSTED) == []
        assert fix_source(fixed, config=TRUSTED, unsafe_fixes=unsafe).text == fixed, "fixing twice changed the text"

        before = _snapshot(args)
        got, new_calls, _ = run(fixed, "run", *[list(a) for a in args])
        assert same(got, expected), f"results differ ({'unsafe' if unsafe else 'safe'} fix, n={n})\n{fixed}"
        assert all(torch.equal(a, b) for a, b in zip(_snapshot(args), before)), "caller's tensors changed"
        # Ping-pong allocates its second buffer at the second merge.
        per_accumulator = min(merges, 2) if want == "pingpong" else min(merges, 1)
        assert new_calls == g.setup + per_accumulator * g.accumulators, fixed


# --- regressions (found by the property above) -------------------------------------------

DEL_WITH_COMMENTS = '''import torch

def run(outs):
    acc = torch.zeros_like(outs[0])
    for c in outs:
        tmp = torch.empty_like(acc)
        torch.add(acc, c, out=tmp)
        acc = tmp
        # keep-1
        del tmp  # keep-2
    return acc
'''


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_dropped_del_keeps_its_comments(crlf):
    """DESIGN 3: comments are kept. The fix drops `del tmp`; the comment on its
    line and the comment lines above it used to go with it (they were carried
    to the next statement of the block, and there was none)."""
    text = DEL_WITH_COMMENTS.replace("\n", "\r\n") if crlf else DEL_WITH_COMMENTS
    fixed = fix_source(text).text
    assert "# keep-1" in fixed
    assert "# keep-2" in fixed


MIXED_INDENTATION = (
    "def helper():\n"
    "\treturn 0  # the file's first indented block uses a tab\n"
    + DEL_WITH_COMMENTS.replace("import torch\n", "import torch  # the rest: four spaces\n")
)


def test_inserted_block_follows_the_enclosing_indentation():
    """The new `if tmp is None:` body is indented like the block it is in, not
    with LibCST's module default (that of the file's first indented block: here
    a tab, which gave `        \\ttmp = torch.empty_like(acc)`)."""
    fixed = fix_source(MIXED_INDENTATION).text
    inserted = next(line for line in fixed.splitlines() if "torch.empty_like" in line)
    assert inserted == "            tmp = torch.empty_like(acc)", repr(inserted)

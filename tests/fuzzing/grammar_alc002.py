"""ALC002 program generator (issue 10): an accumulator grown by concatenation
on every iteration, `acc = torch.cat([acc, part], dim)`, in the shapes the rule
page names (seeds, first-iteration special cases, prepending, several parts,
every concatenation function), plus statements from ITEMS that a list-and-
concatenate-once fix must respect (rules/ALC002.md, DESIGN 3b): the accumulator
read or kept inside the loop, exits that leave another value, parts that change
after they were appended (a workspace, an in-place update, the caller's tensor),
parts of other dtypes (promotion order), a dimension that changes, parts that
are views of bigger buffers (peak memory), a part of the wrong shape (when the
error is raised, and what happened before).

Same Program / slots / tags as grammar.py: the oracle and evaluate are shared.
"""
from __future__ import annotations

import random

from .grammar import Item, Program, _fmt, _indent

CLASSES = ("read", "escape", "exit", "part-changes", "dtype", "dim", "peak", "error-timing", "numpy",
           "spelling", "harmless")
CLASS_NAMES = {
    "read": "accumulator read inside the loop",
    "escape": "accumulator kept / yielded inside the loop",
    "exit": "return / break leave the loop mid-way",
    "part-changes": "part changes after it was appended",
    "dtype": "parts of other dtypes (promotion order)",
    "dim": "concatenation dimension changes",
    "peak": "parts are views of bigger buffers",
    "error-timing": "a part of the wrong shape: when the error comes",
    "numpy": "NumPy concatenations",
    "spelling": "other concatenation spellings",
    "harmless": "harmless uses only",
}

I = Item  # noqa: E741
INSIDE = ("top", "end")
ITEMS = [
    I("sum", "read", INSIDE, "sums.append(float({A}.sum()))", setup="sums = []", ret="sums", none_ok=False),
    I("last-row", "read", ("end",), "last = {A}[-1].clone()", setup="last = None", ret="last"),
    I("len", "harmless", ("end",), "sizes.append(len({A}))", setup="sizes = []", ret="sizes"),
    I("shape", "harmless", ("end",), "sizes.append({A}.shape[0])", setup="sizes = []", ret="sizes"),
    I("print-shape", "harmless", ("end",), "print({A}.shape)"),
    I("print", "read", ("end",), "print({A})"),
    I("keep", "escape", INSIDE, "keep({A})", fuzz=("keep",), none_ok=True),
    I("hist", "escape", ("end",), "hist.append({A})", setup="hist = []", ret="hist"),
    I("yield", "escape", ("end",), "yield {A}", makes_generator=True),
    I("yield-len", "harmless", ("end",), "yield len({A})", makes_generator=True),
    I("return-mid", "exit", ("end",), "if {i} == 2:\n    return {A}", needs=frozenset({"index"})),
    I("break-mid", "exit", ("end",), "if {i} == 2:\n    break", needs=frozenset({"index"})),
    I("break-on-size", "exit", ("end",), "if {A}.shape[0] > 5:\n    break"),
    I("part-inplace", "part-changes", ("end",), "{part}.mul_(2)"),
    I("part-aug", "part-changes", ("end",), "{part} += 1"),  # a write a call-free loop can make
    I("caller-inplace", "part-changes", ("end",), "p.add_(1)"),
    I("part-rebound", "harmless", ("end",), "{part} = {part} * 3"),
    I("acc-inplace", "read", ("end",), "{A}.mul_(0.5)"),
    I("acc-sliced", "read", ("end",), "{A} = {A}[-4:]"),
]


def generate(seed: int) -> Program:
    rng = random.Random(seed)
    tags, shape_tags = set(), []
    fuzz, setup, module, params = set(), [], [], ["x", "parts"]
    ret_extra, slots = [], {"pre": [], "top": [], "end": [], "post": []}
    numpy = rng.random() < 0.15
    if numpy:
        tags.add("numpy")
    A = rng.choice(["acc", "out", "frames", "logits"])
    part = "part"

    # the loop and the part of this iteration
    source = rng.choice(["p", "p", "fresh", "workspace", "view-of-big", "dtype", "wrong-shape", "factory",
                         "factory-inline", "factory", "factory-inline"] + ["factory-fits", "factory-fits-inline"] * 2)
    # factory parts in a `range` loop are what a safe fix needs: draw that more often
    loop = rng.choice(["for", "range", "enum", "while"] + ["range"] * 3 * source.startswith("factory"))
    index = None if loop == "for" else "i"
    header = {"for": "for p in parts:", "range": "for i in range(len(parts)):",
              "enum": "for i, p in enumerate(parts):", "while": "while i < len(parts):"}[loop]
    read = {"range": ["p = parts[i]"], "while": ["p = parts[i]", "i += 1"]}.get(loop, [])
    if loop == "while":
        setup.append("i = 0")
    shape_tags.append("part:" + source)
    # A torch factory's fresh tensor (named, or written inline in the concatenation):
    # the only parts ALC002 can prove fresh, so the only programs that get safe fixes.
    factory = f"torch.full(p.shape, {'float(i)' if index else '2.5'}, dtype=torch.float32)"
    fits = source.startswith("factory-fits")  # constant sizes on a named device: no concatenation can raise
    if fits:
        factory = f"torch.full((2, 4), {'float(i)' if index else '2.5'}, dtype=torch.float32, device=\"cpu\")"
        source = "factory" + source[len("factory-fits"):]
    inline = None
    if source == "p":
        read.append(f"{part} = p")
    elif source == "factory":
        read.append(f"{part} = {factory}")
    elif source == "factory-inline":
        read.append(f"{part} = p")
        inline = factory
    elif source == "fresh":
        read.append(f"{part} = attend(x, p)")
        fuzz.add("attend")
    elif source == "workspace":
        read.append(f"{part} = attend_ws(x, p)")
        fuzz.add("attend_ws")
        tags.add("part-changes")
    elif source == "view-of-big":
        read.append(f"{part} = (p.repeat(4, 1) * 2)[: p.shape[0]]")
        tags.add("peak")
    elif source == "dtype":
        read.append(f"{part} = p.to(DTYPES[{'i' if index else 'len(seen)'} % 3])")
        module.append("DTYPES = [torch.float16, torch.float64, torch.bfloat16]")
        if not index:
            setup.append("seen = []")
            read.append("seen.append(1)")
        tags.add("dtype")
    else:
        read.append(f"{part} = p if {'i' if index else 'len(seen)'} != 2 else p[:, :2]")
        if not index:
            setup.append("seen = []")
            read.append("seen.append(1)")
        slots["top"].append("print('step')")
        tags.add("error-timing")
    if numpy:
        read.append(f"{part} = {part}.detach().float().numpy()" if source != "dtype" else
                    f"{part} = {part}.detach().double().numpy()")

    # the seed
    seed_kind = rng.choice(["none-ifexp", "none-if", "i0", "empty", "first", "clone"])
    if seed_kind == "i0" and not index:
        seed_kind = "none-if"
    shape_tags.append("seed:" + seed_kind)
    # the concatenation
    empty = seed_kind == "empty"  # a (0, D) seed: only row-wise concatenations fit it
    if numpy:
        fn = rng.choice(["np.concatenate", "np.vstack"] if empty else
                        ["np.concatenate", "np.vstack", "np.append", "np.hstack"])
        imports = ["import numpy as np", "import torch"]
    else:
        fn = rng.choice(["torch.cat"] * 4 + ["torch.concat", "torch.concatenate", "torch.vstack", "torch.row_stack"]
                        + ([] if empty else ["torch.hstack", "torch.column_stack", "torch.dstack"]))
        imports = ["import torch"]
        if fn != "torch.cat":
            tags.add("spelling")
    dim = ""
    if fn in ("torch.cat", "torch.concat", "torch.concatenate", "np.concatenate"):
        dim = rng.choice(["", ", dim=0" if not numpy else ", axis=0", ", 0"] +
                         ([] if empty else [", -1", ", dim=1" if not numpy else ", 1"]))
        if index and not empty and rng.random() < 0.1:
            # the same dimension, spelled two ways on alternate iterations
            dim = f", {'dim' if not numpy else 'axis'}=(0 if {index} % 2 else -2)"
            tags.add("dim")
    elif fn == "np.append" and (empty or rng.random() < 0.5):
        dim = ", axis=0"
    order = rng.choice(["[{A}, {part}]"] * 3 + ["[{part}, {A}]", "[{A}, {part}, {part}]", "({A}, {part})"])
    joined = inline if inline and not numpy else part
    concat = f"{fn}({order}{dim})".format(A=A, part=joined)
    if fn == "np.append":
        concat = f"np.append({A}, {joined}{dim})"

    body_concat: list[str] = []
    if seed_kind == "none-ifexp":
        setup.append(f"{A} = None")
        body_concat.append(f"{A} = {joined} if {A} is None else {concat}")
    elif seed_kind == "none-if":
        setup.append(f"{A} = None")
        body_concat.append(f"if {A} is None:\n    {A} = {joined}\nelse:\n    {A} = {concat}")
    elif seed_kind == "i0":
        body_concat.append(f"if {index} == {1 if loop == 'while' else 0}:\n    {A} = {joined}\n    continue\n"
                           f"{A} = {concat}")
    elif seed_kind == "empty":
        width = "x.shape[-1]"
        if numpy:
            setup.append(f"{A} = np.zeros((0, {width}), dtype=np.float32)")
        else:
            setup.append(f"{A} = torch.empty(0, 4, device=\"cpu\")" if fits else f"{A} = torch.empty(0, {width})")
        body_concat.append(f"{A} = {concat}")
    elif seed_kind == "first":
        setup.append(f"{A} = parts[0]" + (".numpy()" if numpy else ""))
        body_concat.append(f"{A} = {concat}")
    else:
        setup.append(f"{A} = x.clone()" + (".numpy()" if numpy else ""))
        body_concat.append(f"{A} = {concat}")
    init_none = seed_kind.startswith("none") or seed_kind == "i0"

    # statements from the table
    holes = {"A": A, "part": part, "i": "i - 1" if loop == "while" else (index or "0")}
    generator = False
    candidates = [it for it in ITEMS if not ("index" in it.needs and not index)]
    if numpy:
        candidates = [it for it in candidates if it.name not in ("part-inplace", "caller-inplace", "acc-inplace")
                      or it.name == "caller-inplace"]
    chosen = {}
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        item = rng.choice(candidates)
        slot = rng.choice(item.slots)
        if slot == "top" and (seed_kind == "i0" or (init_none and not item.none_ok)):
            slot = "end"
        chosen.setdefault(item.name, (item, slot))
    for item, slot in chosen.values():
        tags.add(item.tag)
        fuzz.update(item.fuzz)
        generator |= item.makes_generator
        if item.setup and _fmt(item.setup, holes) not in setup:
            setup.append(_fmt(item.setup, holes))
        if item.ret and item.ret not in ret_extra:
            ret_extra.append(item.ret)
        code = _fmt(item.code, holes)
        if numpy and ".sum()" in code:
            code = code.replace(".clone()", ".copy()")
        slots[slot].append(code.replace(".clone()", ".copy()") if numpy else code)

    body = read + slots["top"] + body_concat + slots["end"]
    loop_code = header + "\n" + "\n".join(_indent("\n".join(body), 1))
    returns = [A] + ret_extra
    fn_body = setup + [loop_code] + slots["post"] + [("yield " if generator else "return ") + ", ".join(returns)]
    if fuzz:
        imports.append("from fuzzlib import " + ", ".join(sorted(fuzz)))
    text = "\n".join(imports + module) + "\n\n\ndef run(" + ", ".join(params) + "):\n" + \
        "\n".join(_indent("\n".join(fn_body), 1)) + "\n"
    hazards = tags - {"harmless"}
    meta = {"rule": "ALC002", "shape": [3, 4], "k": 5, "input_seed": seed, "seed": seed,
            "tags": sorted(hazards) if hazards else ["harmless"], "shape_tags": shape_tags}
    return Program(text, meta)

"""ALC001 program generator.

A program is a function `run(...)` holding the ALC001 pattern in one of its
real shapes (the SKELETON: group of accumulators, merge call, loop, how the
first iteration is handled, where the first value comes from, how the chunk is
made, how the temporary is allocated), plus statements drawn from ITEMS, a
table of uses of the accumulator A, the temporary T, the template X and their
aliases, each placed in a slot of the program:

    def run(x, parts, ...):
        <head>                 # global declarations
        <setup>                # lists the items store into, helpers
        <init>                 # the accumulators' first values
        <pre>                  # slot "pre": before the loop
        for p in parts:        # or range / enumerate / zip / while / nested
            <read>             # the chunk of this iteration
            <top>              # slot "top"
            if A is None: ...  # first-iteration special case, if any
            T = torch.empty_like(X)
            <mid1>             # slot "mid1"
            merge(T, A, chunk)
            <mid2>             # slot "mid2"
            A = T
            del T              # optional
            <end>              # slot "end"
        <post>                 # slot "post": after the loop
        return A, <extras>

Holes in item code: {A} {Al} an accumulator (of the group, the second one),
{T} its temporary, {X} its allocation template, {o} the chunk, {i} the loop
index, {x} the input. Each item and skeleton choice carries a TAG: the class
of issue 8 it exercises (c1..c12), or views / containers / attrs / closures /
generators for the ways a reference is kept, or harmless.

Every program is determined by its seed: `generate(seed)`.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass

SLOTS = ("pre", "top", "mid1", "mid2", "end", "post")
CLASSES = ("c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12",
           "views", "containers", "attrs", "closures", "generators", "harmless")
CLASS_NAMES = {
    "c1": "unknown calls keep references",
    "c2": "merge call keeps / reads its output",
    "c3": "first value not owned",
    "c4": "loop header uses",
    "c5": "allocator keywords, broadcast first value",
    "c6": "template / accumulator not stable",
    "c7": "autograd",
    "c8": "CUDA-stream-like uses",
    "c9": "configured allocators",
    "c10": "allocator spellings (prefilter)",
    "c11": "noqa on one allocation",
    "c12": "peak memory (fresh chunks, work after the loop)",
    "views": "views / aliases of A kept",
    "containers": "A kept in containers",
    "attrs": "A kept in attributes / globals",
    "closures": "A captured by closures / local helpers",
    "generators": "generators (yield, lazy generator expressions)",
    "harmless": "harmless uses only",
}

DEFAULT_SHAPE = (3, 4)


@dataclass
class Program:
    text: str
    meta: dict  # inputs (shape, k, lengths, input_seed), config, tags, noqa lines

    def header(self) -> str:
        return "# fuzz-meta: " + json.dumps(self.meta, sort_keys=True) + "\n"


def parse_header(text: str) -> dict | None:
    for line in text.splitlines():
        if line.startswith("# fuzz-meta: "):
            return json.loads(line[len("# fuzz-meta: "):])
    return None


# --- the table of statements ---------------------------------------------------------

@dataclass
class Item:
    name: str
    tag: str
    slots: tuple
    code: str
    setup: str = ""  # before the loop (at the top of run)
    module: str = ""  # module level
    fuzz: tuple = ()  # names imported from fuzzlib
    imports: tuple = ()  # modules imported
    params: tuple = ()  # parameters of run() it uses
    ret: str = ""  # added to what run() returns
    head: str = ""  # first statement of run() (global declarations)
    needs: frozenset = frozenset()  # index | nodel | init | x2d
    none_ok: bool = False  # fine when A is None or unbound (first iteration)
    makes_generator: bool = False
    weight: int = 1  # how often it is drawn, relative to the others


def _items():
    I = Item  # noqa: E741, N806
    anywhere = ("pre", "top", "mid1", "mid2", "end")
    inside = ("top", "mid1", "mid2", "end")
    kept = anywhere  # where a reference may be kept: before the loop too
    items = [
        # c1: unknown calls that keep references
        I("keep", "c1", anywhere, "keep({A})", fuzz=("keep",), none_ok=True),
        I("register-before", "c1", ("pre",), "register({A})", fuzz=("register",), needs=frozenset({"init"})),
        I("pool-submit", "c1", inside, "pool.submit(torch.sum, {A})", fuzz=("pool",)),
        I("setitem", "c1", inside, "operator.setitem(cache, len(cache), {A})", fuzz=("cache",),
          imports=("operator",)),
        I("set_", "c1", ("mid1", "mid2", "end"), "snapshot.set_({A})", setup="snapshot = torch.empty(0)",
          ret="snapshot"),
        I("logger", "c1", inside, 'logger.debug("acc %s", {A})', fuzz=("logger",)),
        I("custom-op", "c1", inside, "torch.ops.fuzzlib.append({A})"),
        I("callback", "c1", anywhere, "cb({A})", params=("cb",), none_ok=True),
        I("keep-temp", "c1", ("mid1", "mid2"), "keep({T})", fuzz=("keep",)),
        I("suffix-is-acc", "c2", ("mid1",), "torch.add({A}, {A}, out={T})"),
        I("custom-op-temp", "c1", ("mid1",), "torch.ops.fuzzlib.append({T})"),
        I("keep-alias", "c1", inside, "cur = {A}\nkeep(cur)", fuzz=("keep",)),
        # aliases through every binding form, then kept
        I("alias-unpack", "c1", inside, "cur, _ = {A}, None\nkeep(cur)", fuzz=("keep",)),
        I("alias-starred", "c1", inside, "*cur, = [{A}]\nkeep(cur)", fuzz=("keep",)),
        I("alias-for", "c1", inside, "for cur in ({A},):\n    keep(cur)", fuzz=("keep",)),
        I("alias-with", "c1", inside, "with contextlib.nullcontext({A}) as cur:\n    keep(cur)", fuzz=("keep",),
          imports=("contextlib",)),
        I("alias-chain", "c1", inside, "cur = again = {A}\nkeep(again)", fuzz=("keep",)),
        I("keep-star-args", "c1", inside, "keep(*[{A}])", fuzz=("keep",)),
        I("keep-kwargs", "c1", inside, 'keep(**{{"t": {A}}})', fuzz=("keep",)),
        I("keep-locals", "c1", inside, 'keep(locals()["{A}"])', fuzz=("keep",)),
        I("keep-eval", "c1", inside, 'keep(eval("{A}"))', fuzz=("keep",)),
        I("keep-temp-alias", "c1", ("mid1",), "out_view = {T}\nkeep(out_view)", fuzz=("keep",)),
        I("temp-read-before-merge", "c2", ("mid1",), "sums.append({T}.sum())", setup="sums = []", ret="sums"),
        I("temp-print-before-merge", "c2", ("mid1",), "print({T})"),
        I("continue-before-rebind", "c6", ("mid2",), "if {i} == 2:\n    continue", needs=frozenset({"index"})),
        I("break-before-rebind", "harmless", ("mid2",), "if {i} == 2:\n    break", needs=frozenset({"index"})),
        # names the fix would like to use, already taken
        I("alt-name-taken", "c6", ("pre",), "keep_alt = {T}_alt", setup="{T}_alt = x * 3", ret="{T}_alt",
          needs=frozenset({"init", "x2d"}), none_ok=True),
        # control flow around the pattern
        I("break-after", "harmless", ("end",), "if {i} == 2:\n    break", needs=frozenset({"index"})),
        I("return-inside", "harmless", ("end",), "if {i} == 2:\n    return {A}", needs=frozenset({"index"})),
        I("nonlocal-reset", "c6", ("end",), "if {i} == 1:\n    reset()", needs=frozenset({"index", "init"}),
          setup="def reset():\n    nonlocal {A}\n    {A} = x"),
        I("inplace-after", "harmless", ("end",), "{A}.mul_(0.5)"),
        I("inplace-old", "c1", ("mid2",), "{A}.mul_(0.5)"),
        I("temp-after", "c1", ("end", "post"), "sums.append({T}.sum())", setup="sums = []", ret="sums",
          needs=frozenset({"nodel"})),
        I("print-temp-after", "c1", ("end",), "print({T})", needs=frozenset({"nodel"})),
        # c3: the first value bound to another name before the loop
        I("alias-before", "c3", ("pre",), "first = {A}", ret="first", needs=frozenset({"init"})),
        # c4: header uses are skeleton choices (see LOOP_HEADERS); walrus alias in the body
        I("walrus-alias", "c4", inside, "if (snap := {A}) is not None:\n    snaps.append(snap)",
          setup="snaps = []", ret="snaps", none_ok=True),
        # c6: restarts and template rebinds
        I("restart-dtype", "c6", ("end",), "if {i} == 1:\n    {A} = {A}.double()", needs=frozenset({"index"})),
        I("restart-caller", "c6", ("end",), "if {i} == 1:\n    {A} = x", needs=frozenset({"index", "x2d"})),
        I("restart-fresh", "c6", ("end",), "if {i} == 1:\n    {A} = {A}.clone()", needs=frozenset({"index"})),
        I("reset-to-none", "c6", ("end",), "if {i} == 2:\n    {A} = None", needs=frozenset({"index", "noneform"})),
        I("inplace-meta", "c6", ("end",), "{A}.unsqueeze_(0)\n{A}.squeeze_(0)"),
        I("inplace-meta-temp", "c6", ("mid1",), "{T}.unsqueeze_(0)"),
        I("restart-at-0", "c6", ("top",), "if {i} == 0:\n    {A} = {o}", needs=frozenset({"index", "init"})),
        I("template-regrown-by-callee", "c6", ("end",), "regrow(state)", fuzz=("regrow",), params=("state",),
          needs=frozenset({"statetpl"})),
        I("template-data", "c6", ("end",), "{X}.data = {X}.data.double()", needs=frozenset({"tplname"})),
        I("template-resize", "c6", ("end",), "{X}.resize_({X}.shape[0] + 1, *{X}.shape[1:])",
          needs=frozenset({"tplname"})),
        I("template-shrink", "c6", ("end",), "{X} = {X}[1:]", needs=frozenset({"tplname"})),
        I("template-regrow", "c6", ("end",), "regrow()", setup=(
            "def regrow():\n    nonlocal {X}\n    {X} = {X}.double()"), needs=frozenset({"tplname"})),
        # c8: CUDA-stream-like uses
        I("record-stream", "c8", inside, "{A}.record_stream(side)", params=("side",)),
        I("non-blocking", "c8", inside, 'hosts.append({A}.to("cpu", non_blocking=True, copy=True))',
          setup="hosts = []", ret="hosts"),
        I("non-blocking-copy", "c8", inside, "stage.copy_({A}, non_blocking=True)",
          setup="stage = torch.zeros(*x.shape)", ret="stage", needs=frozenset({"x2d"})),
        I("side-stream", "c8", inside, "with torch.cuda.stream(side):\n    side_sums.append({A} * 2)",
          setup="side_sums = []", params=("side",), ret="side_sums"),
        I("capture-ctx", "c8", inside, "with capture({A}):\n    pass", fuzz=("capture",)),
        I("sync-after", "c8", ("end",), "side.synchronize()", params=("side",), none_ok=True),
        # containers
        I("list-append", "containers", kept, "hist.append({A})", setup="hist = []", ret="hist"),
        I("list-iadd", "containers", kept, "hist += [{A}]", setup="hist = []", ret="hist"),
        I("list-insert", "containers", kept, "hist.insert(0, {A})", setup="hist = []", ret="hist"),
        I("dict-store", "containers", kept, "book[len(book)] = {A}", setup="book = {{}}", ret="book"),
        I("tuple-pair", "containers", inside, "pairs.append(({A}, {o}))", setup="pairs = []", ret="pairs"),
        I("set-add", "containers", kept, "seen.add({A})", setup="seen = set()", ret="len(seen)"),
        I("module-list", "containers", kept, "HIST.append({A})", module="HIST = []"),
        # attrs
        I("attr-state", "attrs", kept, "state.last = {A}", params=("state",)),
        I("setattr", "attrs", kept, 'setattr(state, "last", {A})', params=("state",)),
        I("holder", "attrs", kept, "holder.value = {A}", module="class Holder:\n    value = None",
          setup="holder = Holder()", ret="holder"),
        I("class-attr", "attrs", kept, "Holder.value = {A}", module="class Holder:\n    value = None"),
        I("global", "attrs", kept, "LAST = {A}", module="LAST = None", head="global LAST"),
        # closures
        I("lambda-default", "closures", kept, "fns.append(lambda a={A}: a.sum())", setup="fns = []",
          ret="[f() for f in fns]"),
        I("lambda-late", "closures", inside, "fns.append(lambda: {A}.sum())", setup="fns = []",
          ret="[f() for f in fns]"),
        I("partial", "closures", kept, "fns.append(functools.partial(torch.sum, {A}))", setup="fns = []",
          imports=("functools",), ret="[f() for f in fns]"),
        I("local-helper", "closures", kept, "stash({A})",
          setup="kept = []\ndef stash(t):\n    kept.append(t)", ret="kept"),
        I("def-default", "closures", inside, "def peek(a={A}):\n    return a * 1\nfns.append(peek)",
          setup="fns = []", ret="[f() for f in fns]"),
        # generators
        I("yield", "generators", inside, "yield {A}", makes_generator=True),
        I("yield-clone", "generators", inside, "yield {A}.clone()", makes_generator=True),
        I("yield-sum", "generators", inside, "yield {A}.sum()", makes_generator=True),
        I("genexp", "generators", kept, "gens.append(q.sum() for q in [{A}])", setup="gens = []", ret="gens"),
        # harmless uses
        I("shape", "harmless", anywhere, "rows = {A}.shape[0]", needs=frozenset({"init"})),
        I("assert-shape", "harmless", inside, "assert {A}.shape == {o}.shape"),
        I("item", "harmless", inside, "sums.append({A}.sum().item())", setup="sums = []", ret="sums"),
        I("print", "harmless", inside, "print({A}.sum().item())"),
        I("print-tensor", "harmless", inside, "print({A})"),
        I("metadata", "harmless", inside, "meta.append(({A}.numel(), {A}.dim(), len({A}), {A}.dtype, {A}.stride()))",
          setup="meta = []", ret="meta"),
        I("total", "harmless", inside, "total = {A}.sum() + total", setup="total = 0", ret="total"),
        I("isfinite", "harmless", inside, "if not bool(torch.isfinite({A}).all()):\n    raise ValueError('nan')"),
        I("is-none", "harmless", inside, "if {A} is None:\n    raise ValueError('none')", none_ok=False),
        I("clone-kept", "harmless", inside, "hist.append({A}.clone())", setup="hist = []", ret="hist"),
        I("temp-shape", "harmless", ("mid1", "mid2"), "assert {T}.shape == {T}.shape"),
        I("max", "harmless", inside, "peak_value = float({A}.max())", setup="peak_value = 0.0",
          ret="peak_value"),
    ]
    # a view / alias / copy of A (VIEWS, picked when placed), kept in a name or a list
    items.append(I("view-name", "views", inside, "v = {view}", ret="v", needs=frozenset({"x2d"}), weight=6))
    items.append(I("view-list", "views", kept, "vs.append({view})", setup="vs = []", ret="vs",
                   needs=frozenset({"x2d"}), weight=6))
    return items


ITEMS = _items()

# Expressions of A: (text, may share A's storage). The sharing ones must be
# followed to where they end up; the others are fresh tensors or Python values.
VIEWS = [
    ("{A}[0]", True), ("{A}[:, 1:]", True), ("{A}[...]", True), ("{A}[None]", True), ("{A}.view(-1)", True),
    ("{A}.reshape(-1)", True), ("{A}.detach()", True), ("{A}.data", True), ("{A}.float()", True),
    ("{A}.contiguous()", True), ("{A}.to(torch.float32)", True), ("{A}.to({A})", True),
    ("{A}.type(torch.float32)", True), ("{A}.type_as({A})", True), ("{A}.cpu()", True), ("{A}.T", True),
    ("{A}.mT", True), ("{A}.t()", True), ("{A}.unsqueeze(0)", True), ("{A}.narrow(0, 0, 1)", True),
    ("{A}.split(1)[0]", True), ("{A}.unbind()[0]", True), ("{A}.chunk(2)[0]", True), ("{A}.select(0, 0)", True),
    ("{A}.diagonal()", True), ("{A}.ravel()", True), ("{A}.movedim(0, 1)", True), ("{A}.swapaxes(0, 1)", True),
    ("{A}.permute(1, 0)", True), ("{A}.expand(2, *{A}.shape)", True), ("{A}.unflatten(0, (1, -1))", True),
    ("{A}.requires_grad_(False)", True), ("{A}.numpy()", True), ("{A}.view_as({A})", True),
    ("{A}.as_strided({A}.shape, {A}.stride())", True), ("{A}.untyped_storage()", True),
    ("operator.getitem({A}, 0)", True), ("getattr({A}, 'T')", True), ("numpy.asarray({A})", True),
    ("torch.as_tensor({A})", True), ("torch.asarray({A})", True), ("torch.atleast_2d({A})", True),
    ("torch.flatten({A})", True), ("torch.ravel({A})", True), ("torch.squeeze({A})", True),
    ("torch.reshape({A}, (-1,))", True), ("torch.narrow({A}, 0, 0, 1)", True), ("torch.t({A})", True),
    ("torch.transpose({A}, 0, 1)", True), ("torch.tensor_split({A}, 2)[0]", True),
    ("torch.from_numpy({A}.numpy())", True), ("torch.utils.dlpack.from_dlpack({A})", True),
    ("{A}.double()", False), ("{A}.clone()", False), ("{A} * 1", False), ("{A}.abs()", False),
    ("{A}.tolist()", False), ("torch.cat([{A}])", False), ("torch.stack([{A}])", False), ("-{A}", False),
    ("{A}.sum(0)", False), ("torch.exp({A})", False), ("{A}.contiguous().clone()", False),
]


# --- skeleton choices ---------------------------------------------------------------

# First values of an accumulator shaped like x: (expression, tag, extra setup lines, extra return)
OWNED_INITS = ["torch.zeros_like(x)", "x.clone()", "x * 1.0", "torch.zeros(x.shape)", "torch.full_like(x, 0.5)",
               "x + 0", "torch.zeros(*x.shape)"]
NONOWNED_INITS = [
    ("x", "c3"), ("+x", "c3"), ("x.detach()", "c3"), ("x[:]", "c3"), ("x.view_as(x)", "c3"),
    ("x.float()", "c3"), ("x.contiguous()", "c3"), ("x.to(torch.float32)", "c3"), ("state.buf", "c3"),
    ("G0", "c3"), ("parts[0]", "c3"), ("torch.zeros(x.shape, out=x)", "c3"), ("CHAINED", "c3"),
    ("torch.zeros_like(x, requires_grad=True)", "c3"), ("INFERENCE", "c3"), ("attend(x, parts[0])", "c3"),
    ("attend_padded(x, parts[0])", "c3"), ("attend_ws(x, parts[0])", "c3"), ("passthrough(x)", "c3"),
    ("make_acc(x)", "c3"), ("torch.zeros_like(x, dtype=torch.bfloat16)", "c5"),
    ("torch.zeros_like(x, dtype=torch.float64)", "c5"), ("torch.zeros(1, x.shape[-1]).expand_as(x)", "c5"),
    ("torch.zeros(1, x.shape[-1])", "c5"), ("torch.zeros_like(x).t().contiguous().t()", "c5"),
    ("VIEW_OF_NAMED", "c3"), ("torch.zeros(2, *x.shape)[0]", "c3"), ("x.clone().requires_grad_()", "c3"),
    ("x.new_zeros(x.shape)", "c3"), ("torch.zeros_like(x).expand_as(x)", "c3"), ("torch.empty_like(x)", "c3"),
]
LSE_OWNED = ['torch.full_like(x_lse, float("-inf"))', "x_lse.clone()", "x_lse - 1.0", "torch.zeros_like(x_lse)"]
LSE_NONOWNED = ["x_lse", "lses[0]", "+x_lse", "x_lse.detach()"]
FIRST_EXPRS = [("{o}", "c3"), ("{o}.clone()", None), ("{o} * 1", None), ("+{o}", "c3"), ("{o}.detach()", "c3"),
               ("{o}[:]", "c3"), ("{o}.float()", "c3"), ("passthrough({o})", "c3")]

ONE_ACC_MERGES = {
    "add": ["torch.add({A}, {o}, out={T})", "torch.add({o}, {A}, out={T})", "torch.maximum({A}, {o}, out={T})",
            "torch.addcmul({A}, {o}, {o}, value=0.5, out={T})", "torch.sub({A}, {o}, alpha=0.5, out={T})",
            "torch.lerp({A}, {o}, 0.5, out={T})"],
    "addself": ["torch.addcmul({T}, {A}, {o}, out={T})", "torch.add({T}, {A}, out={T})"],
    "combine": ["combine({T}, {A}, {o})", "combine(out={T}, a={A}, b={o})"],
    "fold": ["fold({T}, {A}, {o})"],
}
USER_MERGES = {  # name -> (behaviour, source when defined in the program)
    "blend": "def blend(out, a, b):\n    torch.add(a, b, out=out)\n    TRACE.append(out)",
    "accumulate": "def accumulate(out, a, b):\n    out.add_(a)\n    out.add_(b)",
    "splice": "def splice(out, a, b):\n    out[:1] = a[:1] + b[:1]",
    "fuse": "def fuse(out, a, b):\n    torch.add(a, b, out=out)",
    "wmerge": "def wmerge(out, a, b, w):\n    out.copy_(a * w + b)",
}
ALLOC_SPELLINGS = [  # (template of the call, tag, setup, module import)
    ("torch.empty_like({X}{kw})", None, "", ""),
    ("empty_like({X}{kw})", "c10", "", "from torch import empty_like"),
    ("alloc({X}{kw})", "c10", "alloc = torch.empty_like", ""),
    ("(torch).empty_like({X}{kw})", "c10", "", ""),
    ("torch.\\\n    empty_like({X}{kw})", "c10", "", ""),
    ("torch.empty_like(\n    {X}{kw}\n)", "c10", "", ""),
    ("torch.empty_like(input={X}{kw})", "c10", "", ""),
    ("\\\n    = torch.empty_like({X}{kw})", "c10", "", ""),  # `T \` newline `= ...`
    ("{X}.new_empty({X}.shape{kw})", "c10", "", ""),
]
ALLOC_KEYWORDS = [  # (keyword text, tag, needs)
    (", dtype=torch.float32", "c5", ()), (", dtype=torch.float64", "c5", ()), (", dtype={X}.dtype", "harmless", ()),
    (", device={X}.device", "harmless", ()), (', device="cpu"', "c5", ()), (", requires_grad=False", "harmless", ()),
    (", memory_format=torch.contiguous_format", "c5", ()), (", memory_format=torch.preserve_format", "c5", ()),
    (", layout=torch.strided", "harmless", ()), (", requires_grad=True", "c5", ("nograd",)),
    (", dtype=torch.float16 if {i} < 2 else torch.float32", "c6", ("index",)),
    (", dtype={o}.dtype", "c6", ()),
]
CONFIGURED_ALLOCATORS = {  # allocator -> (call template, tag)
    "torch.zeros_like": "torch.zeros_like({X})",
    "torch.ones_like": "torch.ones_like({X})",
    "torch.full_like": "torch.full_like({X}, 0.5)",
}


class Builder:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.seed = seed
        self.tags: set[str] = set()
        self.shape_tags: list[str] = []
        self.fuzz: set[str] = set()
        self.imports: set[str] = set()
        self.from_imports: set[str] = set()
        self.module: list[str] = []
        self.params = ["x", "parts"]
        self.head: list[str] = []
        self.setup: list[str] = []
        self.init: list[str] = []
        self.slots = {s: [] for s in SLOTS}
        self.ret_extra: list[str] = []
        self.config = {"allocators": [], "merge_functions": []}
        self.meta: dict = {"shape": list(DEFAULT_SHAPE), "k": 4}
        self.noqa_temps: list[str] = []  # the temporaries of a group with a noqa
        self.generator = False
        self.wrap = None  # with-statement around the loop
        self.decorator = None
        self.tplname = None  # a template name of its own, set before the loop
        self.declare = False  # `A = None` before a first-iteration special case
        self.state_template = False  # the template is the caller's state.buf

    def pick(self, seq):
        return self.rng.choice(seq)

    def chance(self, p):
        return self.rng.random() < p

    def param(self, name):
        if name not in self.params:
            self.params.append(name)

    def module_once(self, code):
        if code and code not in self.module:
            self.module.append(code)

    def setup_once(self, code):
        if code and code not in self.setup:
            self.setup.append(code)


def _fmt(code: str, holes: dict) -> str:
    return code.format(**holes)


def _indent(code: str, level: int) -> list[str]:
    pad = "    " * level
    return [pad + line if line.strip() else line for line in code.split("\n")]


def generate(seed: int) -> Program:
    """The program of this seed: the skeleton's stages, then statements from
    ITEMS, then the text."""
    b = Builder(seed)
    for stage in (_group, _loop, _chunk, _first_value, _allocation, _merge, _rebinding, _second_group,
                  _header_uses, _statements, _after_loop, _grad_context):
        stage(b)
    return _render(b)


def _group(b: Builder):
    """The accumulators updated by one merge call, and their temporaries."""
    b.kind = b.pick(["add"] * 4 + ["attn"] * 3 + ["state", "addself", "combine", "combine", "user", "user",
                                                  "twin", "fold", "ragged"])
    b.four_d = b.kind == "add" and b.chance(0.12)  # channels_last needs 4-D tensors
    if b.four_d:
        b.meta["shape"] = [2, 3, 2, 2]
        b.shape_tags.append("4d")
    b.shape_tags.append("group:" + b.kind)
    b.k = 2 if b.kind in ("attn", "state", "twin") else 1
    style = b.pick([("output", "output_tmp", "output_lse", "output_lse_tmp"), ("acc", "tmp", "acc_lse", "tmp_lse"),
                    ("o_acc", "o_new", "lse", "lse_new"), ("out", "buf", "out2", "buf2")])
    b.A, b.T = style[0], style[1]
    b.Al, b.Tl = (style[2], style[3]) if b.k == 2 else (None, None)
    b.accs = [b.A] + ([b.Al] if b.k == 2 else [])
    b.temps = [b.T] + ([b.Tl] if b.k == 2 else [])
    if b.k == 2:
        b.param("lses")
    if b.kind in ("attn", "state"):
        b.param("x_lse")


def _loop(b: Builder):
    """for / range / enumerate / zip / while, maybe nested; what it reads per iteration."""
    if b.kind == "ragged":  # a flat loop over sequences of several lengths
        b.loop = "for"
        b.meta["lengths"] = b.pick([[3, 3, 2, 2, 2], [3, 3, 3, 4, 4], [2, 3, 3, 3], [3, 3, 2]])
        b.tags.add("c6")
    else:
        b.loop = b.pick(["for", "range", "enum", "while", "range", "enum", "while", "reversed"]
                        + (["zip", "zip"] if b.k == 2 else []))
    b.nested = b.kind != "ragged" and b.chance(0.15)
    b.shape_tags.append("loop:" + b.loop + ("+nested" if b.nested else ""))
    b.index = {"for": None, "zip": None, "range": "i", "enum": "i", "while": "i", "reversed": "i"}[b.loop]
    # (a reversed loop's `i == 0` is its LAST iteration: a restart, not a first value)
    b.first_cond = "i == 1" if b.loop == "while" else "i == len(parts) - 1" if b.loop == "reversed" else "i == 0"
    read: list[str] = []
    if b.loop == "for":
        header = "for p in parts:"
    elif b.loop == "zip":
        header = "for p, lp in zip(parts, lses):"
    elif b.loop == "range":
        header = "for i in range(len(parts)):"
        read.append("p = parts[i]")
    elif b.loop == "reversed":
        header = b.pick(["for i in range(len(parts) - 1, -1, -1):", "for i in reversed(range(len(parts))):"])
        read.append("p = parts[i]")
    elif b.loop == "enum":
        header = "for i, (p, lp) in enumerate(zip(parts, lses)):" if b.k == 2 and b.chance(0.5) else \
            "for i, p in enumerate(parts):"
    else:
        header = "while i < len(parts):"
        read += ["p = parts[i]", "i += 1"]
    if b.k == 2 and "lp" not in header:
        read.insert(1 if b.loop in ("range", "reversed") else len(read), "lp = lses[i - 1]" if b.loop == "while" else
                    "lp = lses[i]" if b.index else "")
        if not b.index:  # "for p in parts" with two accumulators: go by zip instead
            header, read = "for p, lp in zip(parts, lses):", []
    b.header, b.read = header, [r for r in read if r]
    # the index of this iteration (a while loop has already counted it)
    b.holes = {"x": "x", "p": "p", "i": "i - 1" if b.loop == "while" else b.index or "0"}


def _chunk(b: Builder):
    """The chunk merged in: the caller's part, or a fresh / padded / workspace / passed-through one."""
    if b.k == 1:
        chunk = b.pick(["p", "passthrough", "arith", "clone"] if b.kind == "ragged" else
                       ["p", "p", "attend", "padded", "ws", "passthrough", "arith", "clone"])
        b.o, b.o_lse = "o", None
        b.read.append({"p": "o = p", "attend": "o = attend(x, p)", "padded": "o = attend_padded(x, p)",
                       "ws": "o = attend_ws(x, p)", "passthrough": "o = passthrough(p)", "arith": "o = p * 2.0",
                       "clone": "o = p.clone()"}[chunk])
        if chunk in ("attend", "padded", "ws", "passthrough"):
            b.fuzz.add(b.read[-1].split("= ")[1].split("(")[0])
    else:
        chunk = b.pick(["p", "p", "attend2", "padded"])
        b.o, b.o_lse = "o", "l"
        b.read.append({"p": "o, l = p, lp", "attend2": "o, l = attend2(x, p, lp)",
                       "padded": "o, l = attend_padded(x, p), lp + 0.0"}[chunk])
        if chunk != "p":
            b.fuzz.add({"attend2": "attend2", "padded": "attend_padded"}[chunk])
    b.shape_tags.append("chunk:" + chunk)
    b.fresh_chunk = chunk in ("attend", "attend2", "padded", "arith", "clone")
    b.holes["o"] = b.o


def _first_value(b: Builder):
    """Set before the loop (owned or not), or on the first iteration (None test, index test)."""
    b.first = "pre" if b.kind == "ragged" else b.pick(
        ["pre"] * 3 + ["none_continue", "none_else"] + (["i0_continue", "i0_else"] if b.index else []))
    b.shape_tags.append("first:" + b.first)
    if b.first != "pre":
        _first_on_first_iteration(b)
    elif b.kind == "ragged":
        b.init.append(f"{b.A} = parts[0].clone()")
    else:
        _first_before_loop(b)
    b.init_declared = b.first == "pre" or b.declare


def _first_before_loop(b: Builder):
    owned = b.chance(0.5)
    for n, acc in enumerate(b.accs):
        if n == 1 and b.kind != "twin":  # the log-sum-exp
            expr = b.pick(LSE_OWNED) if owned or b.chance(0.5) else b.pick(LSE_NONOWNED)
            if expr in LSE_NONOWNED:
                b.tags.add("c3")
            if expr.startswith("lses"):
                b.param("lses")
            b.init.append(f"{acc} = {expr}")
            continue
        if b.four_d:
            expr, tag = b.pick([("torch.zeros_like(x)", None), ("x.clone()", None), ("x", "c3"),
                                ("torch.zeros_like(x, memory_format=torch.channels_last)", "c5"),
                                ("x.contiguous(memory_format=torch.channels_last)", "c3")])
        elif owned:
            expr, tag = b.pick(OWNED_INITS), None
        else:
            expr, tag = b.pick(NONOWNED_INITS)
        if b.kind == "twin" and n == 1:
            expr, tag = b.pick([("torch.zeros_like(x, dtype=torch.float64)", None), ("x * 2.0", None), ("x", "c3")])
        if tag:
            b.tags.add(tag)
        if expr == "CHAINED":
            b.init.append(f"{acc} = base{n} = torch.zeros_like(x)")
            b.ret_extra.append(f"base{n}")
        elif expr == "VIEW_OF_NAMED":  # a view of a buffer another name holds
            b.init.append(f"base{n} = torch.zeros(2, *x.shape)\n{acc} = base{n}[1]")
            b.ret_extra.append(f"base{n}")
        elif expr == "INFERENCE":
            b.init.append(f"with torch.inference_mode():\n    {acc} = torch.zeros_like(x)")
        else:
            b.init.append(f"{acc} = {expr}")
            if expr == "G0":
                b.module_once(f"G0 = torch.zeros({DEFAULT_SHAPE[0]}, {DEFAULT_SHAPE[1]})")
            if expr.startswith("state"):
                b.param("state")
            for name in ("attend_padded", "attend_ws", "attend", "passthrough", "make_acc"):
                if expr.startswith(name + "("):
                    b.fuzz.add(name)


def _first_on_first_iteration(b: Builder):
    fexpr, ftag = b.pick(FIRST_EXPRS)
    if ftag:
        b.tags.add(ftag)
    if "passthrough" in fexpr:
        b.fuzz.add("passthrough")
    chunks = [b.o, b.o_lse] if b.k == 2 else [b.o]
    if b.kind == "twin":
        chunks = [b.o, f"({b.o} * 2.0)"]
    values = [fexpr.format(o=c) for c in chunks]
    b.assign = (f"{', '.join(b.accs)} = {', '.join(values)}" if b.k == 2 and b.chance(0.5)
                else "\n".join(f"{a} = {v}" for a, v in zip(b.accs, values)))
    b.declare = b.first.startswith("none") or b.chance(0.6)
    if b.declare:
        b.init.append(f"{b.A} = None" if b.k == 1 or b.chance(0.5) else f"{b.A} = {b.Al} = None")
    b.test = f"{b.A} is None" if b.first.startswith("none") else b.first_cond


def _allocation(b: Builder):
    """Templates, allocator (spelling, keywords, configured ones), noqa."""
    b.templates = list(b.accs)
    if b.kind == "twin" and b.chance(0.4):
        b.templates = [b.accs[1], b.accs[0]]  # the temporaries take each other's template
        b.tags.add("c6")
    elif b.k == 1 and b.kind not in ("ragged", "fold") and b.chance(0.25):
        tpl_choice = b.pick(["tpl", "x", "o", "p"])
        if tpl_choice == "tpl":
            b.tplname = "tpl"
            b.setup.append(f"tpl = {b.pick(['x.clone()', 'torch.zeros_like(x)', 'x', 'state.buf'])}")
            if b.setup[-1].endswith("state.buf"):
                b.param("state")
                b.state_template = True
        b.templates = [tpl_choice]
    b.shape_tags.append("template:" + ("acc" if b.templates == b.accs else "other"))
    spelling, sp_tag, sp_setup, sp_import = ALLOC_SPELLINGS[0] if b.chance(0.7) else b.pick(ALLOC_SPELLINGS)
    calls = []
    b.alloc_kind = "empty_like"
    if b.kind == "fold":  # a configured shape allocator: every argument must be stable
        b.config["allocators"].append("torch.empty")
        b.tags.add("c9")
        b.setup.append("n_rows = x.shape[0]")
        width = b.pick(["width", "x.shape[-1]", "{X}.shape[-1]"] + (["widths[{i}]"] * 2 if b.index else []))
        if width == "width":
            b.setup.append("width = x.shape[-1]")
        if "widths" in width:
            b.param("widths")
            b.tags.add("c6")
        calls = [f"torch.empty(n_rows, {width})"]
        spelling = None
    elif b.k == 1 and b.kind != "ragged" and (b.kind == "addself" or b.chance(0.15)):
        b.alloc_kind = b.pick(["empty_like"] + list(CONFIGURED_ALLOCATORS) * 2)
        if b.alloc_kind != "empty_like":  # an initialising allocator, configured
            b.config["allocators"].append(b.alloc_kind)
            b.tags.add("c9")
            calls = [CONFIGURED_ALLOCATORS[b.alloc_kind]]
            spelling = None
    if spelling is not None:
        calls = [spelling.replace("{kw}", _alloc_keyword(b, spelling, sp_tag, sp_setup, sp_import))] * b.k
    b.alloc_lines = [(f"{t} " if call.startswith("\\") else f"{t} = ") + _fmt(call, {**b.holes, "X": tpl})
                     for t, call, tpl in zip(b.temps, calls, b.templates)]
    if b.chance(0.08):  # noqa on one allocation of the group
        n = b.rng.randrange(len(b.alloc_lines))
        last = b.alloc_lines[n].split("\n")
        last[0] += b.pick(["  # noqa: ALC001", "  # noqa", "  # noqa:ALC001", "  # NOQA: ALC001",
                           "  # noqa: E501, ALC001", "  # noqa: E501", "  # noqa: ALC002"]) if len(last) == 1 else ""
        if len(last) == 1:
            b.alloc_lines[n] = last[0]
            b.noqa_temps = list(b.temps)
            b.tags.add("c11")


def _alloc_keyword(b: Builder, spelling, sp_tag, sp_setup, sp_import) -> str:
    if sp_tag:
        b.tags.add(sp_tag)
    b.setup_once(sp_setup)
    if sp_import:
        b.module_once(sp_import)
    kw = ""
    if b.four_d and b.chance(0.6):
        kw = b.pick([", memory_format=torch.channels_last", ", memory_format=torch.preserve_format",
                     ", memory_format=torch.contiguous_format"])
        b.tags.add("c5")
    elif b.chance(0.2):
        kw, kw_tag, kw_needs = b.pick(ALLOC_KEYWORDS)
        if ("index" in kw_needs and not b.index) or "new_empty" in spelling:
            kw = ""
        else:
            b.tags.add(kw_tag)
            if "nograd" in kw_needs:
                b.wrap = "with torch.no_grad():"
    return kw


def _merge(b: Builder):
    """The merge call: an out= operator, a known kernel, a configured or a user function."""
    b.holes.update(A=b.A, T=b.T, Al=b.Al or b.A, Tl=b.Tl or b.T, X=b.templates[0], l=b.o_lse or "l")
    kind = b.kind
    if kind in ("add", "ragged"):
        merge = b.pick(ONE_ACC_MERGES["add"])
    elif kind in ONE_ACC_MERGES:
        merge = b.pick(ONE_ACC_MERGES[kind])
        if kind == "addself":
            b.tags.add("c9" if b.alloc_kind != "empty_like" else "c2")
        if kind in ("combine", "fold"):
            b.config["merge_functions"].append(kind)
            b.fuzz.add(kind)
    elif kind == "user":
        name = b.pick(list(USER_MERGES))
        b.tags.add("c7" if name == "wmerge" else "c2")
        if b.chance(0.5):
            b.module_once(USER_MERGES[name])
            if name == "blend":
                b.module_once("TRACE = []")
        else:
            b.fuzz.add(name)
        if name == "wmerge":
            b.param("w")
            merge = "wmerge({T}, {A}, {o}, w)"
            if b.chance(0.7):
                b.slots["post"].append(f"{b.A}.sum().backward()")
        else:
            merge = name + "({T}, {A}, {o})"
    elif kind == "attn":
        b.fuzz.add("merge_attn_states")
        merge = b.pick(["merge_attn_states(output={T}, output_lse={Tl}, prefix_output={A}, prefix_lse={Al},\n"
                        "                  suffix_output={o}, suffix_lse={l})",
                        "merge_attn_states({T}, {Tl}, {A}, {Al}, {o}, {l})"] * 6 + [
            # the temporary in an input position: read before it is written
            "merge_attn_states(output={A}, output_lse={Al}, prefix_output={T}, prefix_lse={Tl},\n"
            "                  suffix_output={o}, suffix_lse={l})",
            "merge_attn_states({T}, {Tl}, {A}, {Al}, {T}, {l})"])
        if "prefix_output={T}" in merge or "{A}, {Al}, {T}" in merge:
            b.tags.add("c2")
    elif kind == "state":
        name = b.pick(["merge_state", "merge_state_v2"])
        b.fuzz.add(name)
        merge = name + "({A}, {Al}, {o}, {l}, {T}, {Tl})"
    else:  # twin
        b.fuzz.add("combine2")
        b.config["merge_functions"].append("combine2")
        merge = "combine2({T}, {Tl}, {A}, {Al}, {o})"
    b.merge = _fmt(merge, b.holes)
    if b.index and b.chance(0.06):  # a merge on some iterations only; the rebinding on all
        b.merge = f"if {b.holes['i']} % 2 == 0:\n" + "\n".join(_indent(b.merge, 1))
        b.tags.add("c2")


def _rebinding(b: Builder):
    if b.k == 2 and b.chance(0.5):
        b.rebind = [f"{b.A}, {b.Al} = {b.T}, {b.Tl}"]
    else:
        b.rebind = [f"{a} = {t}" for a, t in zip(b.accs, b.temps)]
    b.has_del = b.chance(0.3)
    b.dels = ([f"del {', '.join(b.temps)}"] if b.chance(0.5) else [f"del {t}" for t in b.temps]) \
        if b.has_del else []


def _second_group(b: Builder):
    """A second, independent group in the same loop."""
    b.group2 = []
    if b.kind in ("add", "attn") and b.chance(0.12):
        b.shape_tags.append("groups:2")
        b.init.append(b.pick(["acc2 = torch.zeros_like(x)", "acc2 = x.clone()", "acc2 = x"]))
        b.group2 = ["tmp2 = torch.empty_like(acc2)", "torch.mul(acc2, 0.5, out=tmp2)" if b.chance(0.3) else
                    f"torch.add(acc2, {b.o}, out=tmp2)", "acc2 = tmp2"]
        b.ret_extra.append("acc2")


def _header_uses(b: Builder):
    """c4: uses of A in the loop header (for iterable, while test, walrus), async for."""
    A = b.A
    if b.init_declared and b.first == "pre" and b.chance(0.12):
        if b.header == "for p in parts:":
            b.header = b.pick([f"for p in shifted({A}, parts):", f"for p in track({A}, parts):",
                               f"for p in parts[: {A}.shape[0] + len(parts)]:",
                               f"for p in (q + {A}.mean() for q in parts):"])
            for name in ("shifted", "track"):
                if name in b.header:
                    b.fuzz.add(name)
            b.tags.add("c4")
        elif b.loop == "while":
            b.header = b.pick([f"while i < len(parts) and note({A}):",
                               f"while (cur := {A}) is not None and i < len(parts):",
                               f"while i < len(parts) and {A}.shape[0] > 0:"])
            if "note" in b.header:
                b.fuzz.add("note")
            if "cur :=" in b.header:
                b.slots["top"].append("snaps.append(cur)")
                b.setup_once("snaps = []")
                b.ret_extra.append("snaps")
            b.tags.add("c4")
    if b.loop == "while" and b.k == 1 and b.first != "pre" and b.templates == b.accs and b.chance(0.15):
        b.header = "while (tpl := pick(parts, i)) is not None:"  # the template bound in the header
        b.fuzz.add("pick")
        b.read = ["p = tpl", "i += 1"] + b.read[2:]
        b.alloc_lines = [line.replace(f"({A}", "(tpl", 1) for line in b.alloc_lines]
        b.tags.add("c4")
    if b.loop == "while":
        b.setup.insert(0, "i = 0")
    b.is_async = b.header == "for p in parts:" and b.chance(0.08)
    if b.is_async:
        b.header = "async for p in aiterate(parts):"
        b.fuzz.add("aiterate")
        b.shape_tags.append("async")


def _statements(b: Builder):
    """0-3 statements from ITEMS, each in one of its slots."""
    n_items = b.rng.choice([0, 1, 1, 2, 2, 3])
    candidates = [it for it in ITEMS if _applicable(it, b) and not (b.is_async and it.makes_generator)]
    chosen = []
    weights = [it.weight for it in candidates]
    for _ in range(n_items):
        item = b.rng.choices(candidates, weights)[0]
        if item.name in (c.name for c, _ in chosen):
            continue
        slots = [s for s in item.slots if _slot_ok(s, item, b.first, b.init_declared)]
        if not slots:
            continue
        chosen.append((item, b.pick(slots)))
    for item, slot in chosen:
        if "{view}" not in item.code:
            b.tags.add(item.tag)
        if item.makes_generator:
            b.generator = True
        b.fuzz.update(item.fuzz)
        b.imports.update(item.imports)
        for name in item.params:
            b.param(name)
        b.module_once(item.module)
        b.setup_once(_fmt(item.setup, b.holes))
        if item.head and item.head not in b.head:
            b.head.append(item.head)
        if item.ret and item.ret not in b.ret_extra:
            b.ret_extra.append(_fmt(item.ret, b.holes))
        holes = b.holes
        if "{view}" in item.code:
            view, shares = b.pick(VIEWS)
            holes = {**b.holes, "view": _fmt(view, b.holes)}
            b.tags.add("views" if shares else "harmless")
            for module in ("operator", "numpy"):
                if f"{module}." in view:
                    b.imports.add(module)
        code = _fmt(item.code, holes)
        if slot == "top" and b.first != "pre" and not item.none_ok:
            code = f"if {b.A} is not None:\n" + "\n".join(_indent(code, 1))
        b.slots[slot].append(code)


def _after_loop(b: Builder):
    """c12: work after the loop that allocates, while scratch buffers may still be alive."""
    A = b.A
    if b.chance(0.25):
        b.slots["post"].append(b.pick([f"{A} = {A} * 2 + 1", f"scaled = {A} * 2\n{A} = scaled + scaled"]))
        if b.fresh_chunk:
            b.tags.add("c12")
    elif b.fresh_chunk:
        b.tags.add("c12")


def _grad_context(b: Builder):
    """c7: grad contexts around the loop (a lexical no_grad may hide an enable_grad)."""
    if b.wrap is None and b.chance(0.12):
        b.wrap = b.pick(["with torch.no_grad():", "with torch.inference_mode():",
                         "with torch.no_grad():\n    with torch.enable_grad():",
                         "with torch.no_grad():\n    with torch.set_grad_enabled(True):",
                         "with torch.set_grad_enabled(False):", "with torch.autocast('cpu'):"])
        b.tags.add("c7")
    elif b.chance(0.05):
        b.decorator = b.pick(["@torch.no_grad()", "@torch.inference_mode()"])
        b.tags.add("c7")
    if "w" in b.params:
        b.tags.add("c7")


def _render(b: Builder) -> Program:
    A = b.A
    body = b.read + b.slots["top"]
    pattern = b.alloc_lines + b.slots["mid1"] + [b.merge] + b.slots["mid2"] + b.rebind + b.dels + b.group2 + \
        b.slots["end"]
    if b.kind == "ragged":  # a new sequence restarts the accumulator with another shape
        body.append(f"if {b.o}.shape != {A}.shape:\n    results.append({A})\n    {A} = {b.o}.clone()\n    continue")
        b.setup_once("results = []")
        body += pattern
    elif b.first == "pre":
        body += pattern
    elif b.first.endswith("continue"):
        body.append(f"if {b.test}:\n" + "\n".join(_indent(b.assign, 1)) + "\n    continue")
        body += pattern
    else:
        body.append(f"if {b.test}:\n" + "\n".join(_indent(b.assign, 1)) + "\nelse:\n" +
                    "\n".join(_indent("\n".join(pattern), 1)))
    loop_code = b.header + "\n" + "\n".join(_indent("\n".join(body), 1))
    before_loop = b.init + b.slots["pre"]
    if b.nested:
        b.setup_once("results = []")
        inner = "\n".join(before_loop + [loop_code, f"results.append({A})"])
        if b.loop == "while":
            inner = "i = 0\n" + inner
            b.setup = [s for s in b.setup if s != "i = 0"]
        loop_code = "for batch in range(2):\n" + "\n".join(_indent(inner, 1))
        before_loop = []
    if b.wrap:
        depth = b.wrap.count("\n") + 1
        loop_code = b.wrap + "\n" + "\n".join(_indent(loop_code, depth))
    returns = ["results"] if (b.nested or b.kind == "ragged") else list(b.accs)
    if b.kind == "ragged":
        b.slots["post"].insert(0, f"results.append({A})")
    returns += b.ret_extra
    ret_stmt = ("return " if not b.generator else "yield ") + ", ".join(returns)
    fn_body = b.head + b.setup + before_loop + [loop_code] + b.slots["post"] + [ret_stmt]
    if b.generator:
        fn_body.append("return")

    module = ["import torch"] + [f"import {m}" for m in sorted(b.imports)]
    if b.fuzz:
        module.append("from fuzzlib import " + ", ".join(sorted(b.fuzz)))
    module += b.module
    signature = f"{'async ' if b.is_async else ''}def run({', '.join(b.params)}):"
    text = "\n".join(module) + "\n\n\n" + (b.decorator + "\n" if b.decorator else "") + signature + "\n" + \
        "\n".join(_indent("\n".join(fn_body), 1)) + "\n"
    if b.chance(0.1):  # c10: torch under another name
        text = text.replace("import torch\n", "import torch as th\n", 1).replace("torch.", "th.")
        text = text.replace("(torch)", "(th)")
        b.tags.add("c10")
    hazards = b.tags - {"harmless"}
    meta = dict(b.meta)
    meta.update(input_seed=b.seed, seed=b.seed, tags=sorted(hazards) if hazards else ["harmless"],
                shape_tags=b.shape_tags, noqa_temps=b.noqa_temps, config={k: v for k, v in b.config.items() if v})
    return Program(text, meta)


def _applicable(item: Item, b: Builder) -> bool:
    needs = item.needs
    return not (("index" in needs and not b.index) or ("nodel" in needs and b.has_del)
                or ("tplname" in needs and not b.tplname) or ("init" in needs and b.first != "pre")
                or ("x2d" in needs and b.kind == "ragged") or ("statetpl" in needs and not b.state_template)
                or ("noneform" in needs and not b.first.startswith("none")))


def _slot_ok(slot, item, first, init_declared) -> bool:
    if slot == "pre" and first != "pre" and not item.none_ok:
        return False
    if slot in ("pre", "top") and not init_declared:
        return False
    return True

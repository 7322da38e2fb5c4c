"""The use classifier: every occurrence of a name is given one kind from a closed list.

A rule that wants to reuse a tensor's buffer must know every way the rest of
the program can observe that buffer. This module answers it by ALLOWLIST: an
occurrence is harmless only when its immediate syntactic context is one of a
few forms known to produce nothing that shares storage with the tensor, or to
consume the tensor without keeping it, on the current stream. Everything else
is not harmless, and says why in one line a user can act on.

The classification is local. A value that may share storage with the tensor
(a view `acc[0]`, `acc.T`, `acc.view(...)`, `acc or x`, `+acc`) is followed to
where it ends up, with the same rules; no alias tracking across statements is
needed, because binding such a value to a name is itself an ESCAPE.

Kinds (closed):
- MERGE_ARG   argument of a merge kernel the rule trusts (pre-assigned by the rule)
- TEMPLATE    the allocator's template argument (pre-assigned by the rule)
- METADATA    `.shape`, `.dtype`, `.size()`, `len(x)`, `x is None`, ...
- REBIND      a binding of the name (assignment target, `for` target, walrus target)
- DELETE      `del x`
- PURE_READ   input of an allowlisted operation whose result shares no storage
- INPLACE     a value-only in-place write (`x += 1`, `x[i] = v`, `x.add_(y)`)
- UNKNOWN     anything not on a list: may keep a reference, read it later, resize it
- ASYNC       read by another stream or asynchronously (`record_stream`, `non_blocking=`,
              a `with torch.cuda.stream(...)` block)
- ESCAPE      definitely outlives its statement: bound to another name, stored,
              put in a container, returned, yielded, iterated, captured
- CONCAT_ARG  a value joined by a concatenation that grows an accumulator (pre-assigned
              by ALC002: the accumulator in `acc = torch.cat([acc, x])`, and the part `x`)

PURE_READ and INPLACE depend on autograd: outside `torch.no_grad()` /
`torch.inference_mode()`, an operation that saves its input for backward
(`acc * w`, `acc.abs()`) makes a later in-place reuse of that buffer break
`backward()`. Those uses carry `grad=True` and are harmless only under a
lexical no-grad context.

How a rule uses it (ALC001 does; ALC002 should, rather than a second classifier):

    classifier = classifier_for(ctx, loop.scope)           # one per scope
    uses = classifier.uses({"acc", "tmp"}, loop.node.body, boundary=loop.node,
                           preassigned={id(node): Kind.MERGE_ARG, ...})
    if any(u.kind is Kind.ESCAPE for u in uses): ...       # the buffer is kept: report nothing
    blockers = [u.reason for u in uses if not u.harmless]  # no safe fix; say why

`preassigned` gives the rule's own pattern nodes their kind (the merge call's
arguments, the rebinding, the concatenation); they stay harmless unless a
`with` block around them makes them otherwise. `captured_names` (closures,
global/nonlocal) and `dynamic_access` (`locals()`, `eval`, frames) cover what
no single occurrence shows.

ALC002 uses it too (rules/alc002_fix.py), asking other questions of the same
kinds: inside the loop, any use of the accumulator but its own pattern (even a
METADATA read) sees the value the rewrite leaves stale, so it blocks the fix
whatever its kind; and a part kept in a list must not be written after it is
appended, which `Use.keeps_values` answers (a use that can neither write the
tensor nor keep it for later).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from enum import Enum

from .names import last_names
from .scopes import walk_scope


class Kind(str, Enum):
    MERGE_ARG = "merge argument"
    TEMPLATE = "allocation template"
    METADATA = "metadata read"
    REBIND = "rebinding"
    DELETE = "deletion"
    PURE_READ = "non-aliasing read"
    INPLACE = "in-place write"
    UNKNOWN = "unknown use"
    ASYNC = "asynchronous use"
    ESCAPE = "escape"
    CONCAT_ARG = "concatenated value"


@dataclass(frozen=True)
class Use:
    name: str
    node: ast.AST  # the ast.Name
    kind: Kind
    line: int
    reason: str | None = None  # None: harmless; else what makes it not harmless
    resizes: bool = False  # may change the tensor's shape/strides (out= of a torch op, shape changers)
    grad: bool = False  # not harmless only because autograd may save the tensor for backward

    @property
    def harmless(self) -> bool:
        return self.reason is None

    @property
    def keeps_metadata(self) -> bool:
        """Can this use leave the tensor's shape, dtype, device and strides as
        they were? (What the stability proof asks of a template.)"""
        return self.kind in (Kind.METADATA, Kind.PURE_READ, Kind.INPLACE, Kind.TEMPLATE,
                             Kind.MERGE_ARG) and not self.resizes

    @property
    def keeps_values(self) -> bool:
        """Does this use leave the tensor's values as they were, and keep no
        reference through which they could be written later? (What ALC002's
        list of parts asks of a part: nothing writes it after it is appended.
        Autograd saving it for backward changes no value: `grad` uses count.)"""
        if self.reason is not None and not self.grad:
            return False
        return self.kind in (Kind.METADATA, Kind.PURE_READ, Kind.TEMPLATE, Kind.REBIND, Kind.DELETE,
                             Kind.CONCAT_ARG) and not self.resizes


# --- the lists -----------------------------------------------------------------------

METADATA_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "layout", "is_cuda",
                                 "requires_grad", "is_sparse", "is_leaf", "names"})
METADATA_METHODS = frozenset({"size", "numel", "dim", "stride", "is_contiguous", "element_size",
                              "nelement", "ndimension", "is_floating_point", "is_complex",
                              "get_device", "storage_offset", "type"})
# Tensor methods whose result shares no storage with the receiver and is not
# differentiable, so nothing is ever saved for backward.
NONDIFF_METHODS = frozenset({"item", "tolist", "any", "all", "isnan", "isinf", "isfinite",
                             "eq", "ne", "lt", "le", "gt", "ge", "equal", "allclose", "isclose",
                             "argmax", "argmin", "count_nonzero", "sign", "__bool__"})
# Tensor methods returning fresh storage; True: may save the receiver for backward.
PURE_METHODS = {"clone": False, "sum": False, "mean": False, "exp": False, "neg": False,
                "sqrt": False, "abs": True, "norm": True, "amax": True, "amin": True,
                "max": True, "min": True, "square": True, "log": True, "pow": True,
                "logsumexp": True, "softmax": False, "sigmoid": False, "tanh": False}
# Value-only in-place methods (never the shape/storage changers below).
# True: may save the receiver's buffer for backward unless every argument is a constant.
INPLACE_METHODS = {"add_": False, "sub_": False, "zero_": False, "fill_": False, "copy_": False,
                   "mul_": True, "div_": True, "clamp_": True, "clamp_min_": True,
                   "clamp_max_": True, "addcmul_": True, "addcdiv_": True, "lerp_": True,
                   "masked_fill_": False, "exp_": True, "neg_": False, "abs_": True,
                   "sqrt_": True, "maximum_": True, "minimum_": True, "nan_to_num_": True}
SHAPE_CHANGERS = frozenset({"resize_", "resize_as_", "set_", "as_strided_", "squeeze_",
                            "unsqueeze_", "t_", "transpose_", "swapdims_", "swapaxes_",
                            "requires_grad_", "share_memory_", "detach_", "retain_grad",
                            "register_hook", "untyped_storage", "storage", "__setstate__"})
# Methods and attributes whose result may share storage with the receiver.
VIEW_METHODS = frozenset({"view", "view_as", "reshape", "reshape_as", "transpose", "permute", "t",
                          "expand", "expand_as", "narrow", "select", "squeeze", "unsqueeze",
                          "flatten", "unflatten", "contiguous", "detach", "to", "float", "half",
                          "bfloat16", "double", "int", "long", "bool", "cuda", "cpu", "type_as", "type",
                          "as_strided", "unbind", "split", "chunk", "tensor_split", "movedim",
                          "diagonal", "unfold", "real", "imag", "view_as_real", "numpy",
                          "__dlpack__", "pin_memory", "coalesce", "data"})
# Methods that keep their argument (containers, registries, queues, caches).
STORING_METHODS = frozenset({
    "append", "extend", "insert", "add", "put", "put_nowait", "appendleft", "extendleft",
    "setdefault", "update", "push", "register_buffer", "register_parameter", "setattr",
    "__setitem__", "register", "cache", "store", "save", "set", "send", "submit", "apply_async",
})
# Builtins: metadata, harmless readers, and those whose result holds the argument.
BUILTIN_METADATA = frozenset({"len", "isinstance", "type", "callable"})
BUILTIN_READERS = frozenset({"print", "str", "repr", "format", "float", "int", "bool", "complex"})
BUILTIN_ALIASING = frozenset({"list", "tuple", "set", "frozenset", "dict", "iter", "zip", "enumerate",
                              "reversed", "map", "filter", "sorted", "vars", "memoryview", "next",
                              "getattr", "setattr", "globals", "locals", "id", "hash"})
# torch functions (torch.X, torch.linalg.X, torch.special.X, torch.fft.X) returning
# fresh storage; True: may save an input for backward.
PURE_TORCH_FUNCTIONS = {"exp": False, "sum": False, "mean": False, "clone": False, "neg": False,
                        "isnan": False, "isinf": False, "isfinite": False, "equal": False,
                        "allclose": False, "isclose": False, "any": False, "all": False,
                        "count_nonzero": False, "sqrt": False, "sigmoid": False, "tanh": False,
                        "empty_like": False, "zeros_like": False, "ones_like": False, "full_like": False,
                        "rand_like": False, "randn_like": False, "empty": False, "zeros": False,
                        "ones": False, "full": False, "rand": False, "randn": False, "arange": False,
                        "tensor": False,
                        "abs": True, "norm": True, "amax": True, "amin": True, "maximum": True,
                        "minimum": True, "logsumexp": True, "log": True, "square": True,
                        "matrix_norm": True, "vector_norm": True}
TORCH_NAMESPACES = ("torch", "torch.linalg", "torch.special", "torch.fft")
# Context managers under which a use is what it seems: they switch no stream.
GRAD_CONTEXTS = {"torch.no_grad": "no_grad", "torch.autograd.no_grad": "no_grad",
                 "torch.autograd.grad_mode.no_grad": "no_grad",
                 "torch.inference_mode": "inference", "torch.autograd.inference_mode": "inference",
                 "torch.autograd.grad_mode.inference_mode": "inference",
                 "torch.enable_grad": "grad", "torch.autograd.enable_grad": "grad",
                 "torch.set_grad_enabled": "set", "torch.autograd.set_grad_enabled": "set"}
HARMLESS_CONTEXTS = frozenset({
    "torch.autograd.profiler.record_function", "torch.profiler.record_function",
    "torch.cuda.nvtx.range", "nvtx.annotate", "torch.autocast", "torch.amp.autocast",
    "torch.cuda.amp.autocast", "torch.cpu.amp.autocast", "contextlib.nullcontext",
    "warnings.catch_warnings", "torch.autograd.profiler.profile", "torch.profiler.profile",
})
# Additive ops never save an operand for backward; with a numeric constant as the
# other operand, neither do these.
_NEVER_SAVES = (ast.Add, ast.Sub, ast.FloorDiv, ast.Mod, ast.BitAnd, ast.BitOr, ast.BitXor,
                ast.LShift, ast.RShift)
_SAVES_UNLESS_CONSTANT = (ast.Mult, ast.Div)


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)) \
        and not isinstance(node.value, bool)


def is_none_test(node: ast.AST, parent: ast.AST) -> bool:
    return (isinstance(parent, ast.Compare) and len(parent.ops) == 1
            and isinstance(parent.ops[0], (ast.Is, ast.IsNot))
            and any(isinstance(side, ast.Constant) and side.value is None and side is not node
                    for side in (parent.left, *parent.comparators)))


def source(node: ast.AST, lines: list | None = None, limit: int = 60) -> str:
    """The node's code for a message: as the user wrote it when the lines are
    known (first line only), else unparsed; shortened to `limit` characters."""
    text = None
    if lines and getattr(node, "lineno", None) and 0 < node.lineno <= len(lines):
        line = lines[node.lineno - 1].encode("utf-8")
        end = node.end_col_offset if node.end_lineno == node.lineno else len(line)
        text = line[node.col_offset:end].decode("utf-8", "replace").rstrip()
        if node.end_lineno != node.lineno:
            text += " ..."
    if not text:
        text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class UseClassifier:
    """Classifies occurrences of names in one scope (a function or module).

    qualify(expr) -> qualified name through the module's imports, or None;
    is_builtin(name) -> whether a bare name means Python's builtin there;
    merge_names: last names of the merge kernels the user trusts (config);
    parents: node -> parent node for the whole module.
    """

    def __init__(self, parents: dict, qualify, is_builtin, merge_names: frozenset, lines: list | None = None):
        self.parents = parents
        self.lines = lines
        self.qualify = qualify
        self.is_builtin = is_builtin
        self.merge_names = merge_names

    def quote(self, node: ast.AST) -> str:
        return source(node, self.lines)

    # --- entry points ---------------------------------------------------------------

    def classify(self, node: ast.Name, boundary: ast.AST | None = None,
                 preassigned: dict | None = None) -> Use:
        """One occurrence. `boundary` (a loop) limits the `with` blocks that are
        checked around it; `preassigned` maps id(node) -> Kind for the rule's own
        pattern nodes (harmless unless a context makes them otherwise)."""
        name = node.id
        if preassigned and id(node) in preassigned:
            kind, reason, grad, resizes = preassigned[id(node)], None, False, False
        elif isinstance(node.ctx, ast.Store):
            kind, reason, grad, resizes = self._binding(node)
        elif isinstance(node.ctx, ast.Del):
            kind, reason, grad, resizes = Kind.DELETE, None, False, False
        else:
            kind, reason, grad, resizes = self._value(node, name)
        grad = grad and reason is None and self.grad_mode(node) not in ("no_grad", "inference")
        if grad:
            reason = (f"autograd may save `{name}` for backward in `{self.quote(self.expression_of(node))}` "
                      f"(line {node.lineno}), and a reused buffer would make backward() fail; run the "
                      "loop under `torch.no_grad()` or `torch.inference_mode()` if no gradient flows here")
        if boundary is not None and kind is not Kind.ESCAPE:
            context = self._context(node, boundary, name)
            if context is not None and (reason is None or grad or context[0] is Kind.ASYNC):
                (kind, reason), grad = context, False
        return Use(name, node, kind, node.lineno, reason, resizes, grad)

    def uses(self, names, region, boundary=None, preassigned=None) -> list[Use]:
        """Every occurrence of `names` in the region's subtrees, in source order."""
        found = []
        for tree in region:
            for node in ast.walk(tree):
                if isinstance(node, ast.Name) and node.id in names:
                    found.append(self.classify(node, boundary, preassigned))
        found.sort(key=lambda u: (u.node.lineno, u.node.col_offset))
        return found

    # --- bindings ---------------------------------------------------------------------

    def _binding(self, node: ast.Name):
        parent = self.parents.get(node)
        if isinstance(parent, ast.AugAssign) and parent.target is node:
            other = parent.value
            grad = isinstance(parent.op, _SAVES_UNLESS_CONSTANT) and not _is_number(other) \
                or not isinstance(parent.op, _NEVER_SAVES + _SAVES_UNLESS_CONSTANT)
            return Kind.INPLACE, None, grad, False
        return Kind.REBIND, None, False, False

    # --- values -----------------------------------------------------------------------

    def _value(self, expr: ast.AST, name: str):
        """Kind of a use of `expr`, a value that is (or shares storage with) the tensor."""
        p = self.parents.get(expr)
        text = f"`{self.quote(p)}`" if isinstance(p, ast.expr) else f"`{name}`"
        where = f" (line {getattr(expr, 'lineno', '?')})"
        if is_none_test(expr, p):
            return Kind.METADATA, None, False, False
        if isinstance(p, ast.Attribute) and p.value is expr:
            return self._attribute(p, name)
        if isinstance(p, ast.Subscript):
            if p.value is expr:
                if isinstance(p.ctx, ast.Store):
                    return Kind.INPLACE, None, False, False
                if isinstance(p.ctx, ast.Del):
                    return Kind.UNKNOWN, f"{text}{where} deletes part of `{name}`", False, False
                return self._value(p, name)  # a view
            return Kind.UNKNOWN, (f"{text}{where} uses `{name}` as an index or key (a container "
                                  "may keep it, or compare it by identity)"), False, False
        if isinstance(p, ast.Slice):
            return Kind.PURE_READ, None, False, False
        if isinstance(p, ast.BinOp):
            other = p.right if p.left is expr else p.left
            grad = not isinstance(p.op, _NEVER_SAVES) and not (
                isinstance(p.op, _SAVES_UNLESS_CONSTANT) and _is_number(other))
            return Kind.PURE_READ, None, grad, False
        if isinstance(p, ast.UnaryOp):
            if isinstance(p.op, ast.UAdd):
                return self._value(p, name)  # `+x` is x itself
            return Kind.PURE_READ, None, False, False
        if isinstance(p, ast.Compare):
            index = [p.left, *p.comparators].index(expr)
            ops = [p.ops[i] for i in (index - 1, index) if 0 <= i < len(p.ops)]
            if any(isinstance(op, (ast.Is, ast.IsNot)) for op in ops):
                return Kind.UNKNOWN, (f"{text}{where} compares `{name}` by identity, which buffer "
                                      "reuse changes"), False, False
            if any(isinstance(op, (ast.In, ast.NotIn)) for op in p.ops[index:index + 1]):
                return Kind.UNKNOWN, (f"{text}{where} looks `{name}` up in a container, which may "
                                      "compare it by identity"), False, False
            return Kind.PURE_READ, None, False, False
        if isinstance(p, ast.BoolOp):
            return self._value(p, name)  # `a or b` is one of them
        if isinstance(p, ast.IfExp):
            if p.test is expr:
                return Kind.PURE_READ, None, False, False
            return self._value(p, name)
        if isinstance(p, ast.FormattedValue):
            return Kind.PURE_READ, None, False, False
        if isinstance(p, ast.Call):
            if p.func is expr:
                return Kind.UNKNOWN, f"{text}{where} calls `{name}`", False, False
            if expr in p.args:
                return self._argument(p, expr, None, name)
        if isinstance(p, ast.keyword):
            call = self.parents.get(p)
            if isinstance(call, ast.Call):
                if p.arg is None:
                    return Kind.ESCAPE, f"`**{name}` unpacks `{name}`{where}", False, False
                return self._argument(call, expr, p.arg, name)
        if isinstance(p, ast.Starred):
            return Kind.ESCAPE, f"`*{self.quote(expr)}`{where} unpacks views of `{name}`", False, False
        if isinstance(p, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            holder = self.parents.get(p)
            if isinstance(holder, (ast.Assign, ast.NamedExpr)) and holder.value is p:
                return Kind.ESCAPE, f"`{self.quote(holder)}`{where} binds another name to `{name}`", False, False
            return Kind.ESCAPE, f"`{self.quote(p)}`{where} puts `{name}` in a container", False, False
        if isinstance(p, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and p.value is expr:
            return Kind.ESCAPE, f"`{self.quote(p)}`{where} binds another name to `{name}`", False, False
        if isinstance(p, ast.AugAssign) and p.value is expr:
            return Kind.UNKNOWN, (f"`{self.quote(p)}`{where} hands `{name}` to the operator of "
                                  f"`{self.quote(p.target)}` (a list's `+=` keeps views of it)"), False, False
        if isinstance(p, ast.Return):
            return Kind.ESCAPE, f"`{self.quote(p)}`{where} returns `{name}` from inside the loop", False, False
        if isinstance(p, (ast.Yield, ast.YieldFrom)):
            return Kind.ESCAPE, f"`{self.quote(p)}`{where} yields `{name}`", False, False
        if isinstance(p, (ast.For, ast.AsyncFor, ast.comprehension)) and p.iter is expr:
            return Kind.ESCAPE, f"iterating over `{self.quote(expr)}`{where} hands out views of `{name}`", \
                False, False
        if isinstance(p, (ast.If, ast.While, ast.Assert)) and p.test is expr:
            return Kind.PURE_READ, None, False, False
        if isinstance(p, ast.Expr):
            return Kind.PURE_READ, None, False, False
        if isinstance(p, ast.Lambda):
            return Kind.ESCAPE, f"a lambda{where} captures `{name}`", False, False
        return Kind.UNKNOWN, f"{text}{where} is not a use of `{name}` known to be harmless", False, False

    def _attribute(self, attr: ast.Attribute, name: str):
        where = f" (line {attr.lineno})"
        if not isinstance(attr.ctx, ast.Load):
            return Kind.ESCAPE, f"`{self.quote(self.parents.get(attr) or attr)}`{where} stores on the tensor object", \
                False, False
        call = self.parents.get(attr)
        if isinstance(call, ast.Call) and call.func is attr:
            method = attr.attr
            text = f"`{self.quote(call)}`{where}"
            if any(k.arg == "non_blocking" for k in call.keywords) or method == "record_stream":
                return Kind.ASYNC, (f"{text} may let another stream or the host read `{name}` "
                                    "after the next merge has overwritten it"), False, False
            if method in METADATA_METHODS and not (method == "type" and (call.args or call.keywords)):
                return Kind.METADATA, None, False, False  # `x.type()` is a string; `x.type(dtype)` may be x
            if method == "data_ptr":
                return Kind.UNKNOWN, f"{text} reads `{name}`'s address, which buffer reuse changes", False, False
            if method in NONDIFF_METHODS:
                return Kind.PURE_READ, None, False, False
            if method in PURE_METHODS:
                return Kind.PURE_READ, None, PURE_METHODS[method], False
            if method in INPLACE_METHODS:
                if isinstance(self.parents.get(call), ast.Expr):
                    arguments = [*call.args, *(k.value for k in call.keywords)]
                    grad = INPLACE_METHODS[method] and not all(_is_number(a) for a in arguments)
                    return Kind.INPLACE, None, grad, False
                return self._value(call, name)  # returns the tensor itself
            if method in SHAPE_CHANGERS:
                return Kind.UNKNOWN, f"{text} may change the shape, storage or autograd state of `{name}`", \
                    False, True
            if method in VIEW_METHODS:
                return self._value(call, name)
            return Kind.UNKNOWN, f"{text}: `.{method}()` is not a method known to leave `{name}` alone", \
                False, True
        if attr.attr in METADATA_ATTRIBUTES:
            return Kind.METADATA, None, False, False
        return self._value(attr, name)  # `.T`, `.data`, `.grad`, ...: may share storage

    def _argument(self, call: ast.Call, expr: ast.AST, keyword: str | None, name: str):
        """`expr` (the tensor or a view of it) passed to `call`."""
        where = f" (line {call.lineno})"
        text = f"`{self.quote(call)}`{where}"
        if any(k.arg == "non_blocking" for k in call.keywords):
            return Kind.ASYNC, f"{text} copies `{name}` asynchronously", False, False
        func = call.func
        if isinstance(func, ast.Name) and self.is_builtin(func.id):
            if func.id in BUILTIN_METADATA:
                return Kind.METADATA, None, False, False
            if func.id in BUILTIN_READERS:
                return Kind.PURE_READ, None, False, False
            if func.id in BUILTIN_ALIASING:
                return Kind.ESCAPE, f"{text} keeps `{name}` (or views of it)", False, False
            if func.id == "abs":
                return Kind.PURE_READ, None, True, False
        qualified = self.qualify(func) or ""
        last = qualified.rsplit(".", 1)[-1] if qualified else (func.attr if isinstance(func, ast.Attribute) else
                                                               getattr(func, "id", ""))
        if last in self.merge_names and not qualified.startswith("torch."):
            return Kind.MERGE_ARG, None, False, False
        if qualified.rsplit(".", 1)[0] in TORCH_NAMESPACES:
            if any(k.arg == "out" for k in call.keywords):
                # out= operators refuse autograd; `out=x` writes x (and may resize it).
                if keyword == "out":
                    return Kind.INPLACE, None, False, True
                return Kind.PURE_READ, None, False, False
            if last in PURE_TORCH_FUNCTIONS:
                return Kind.PURE_READ, None, PURE_TORCH_FUNCTIONS[last], False
            return Kind.UNKNOWN, (f"{text}: `{qualified}` is not on the list of torch functions "
                                  f"known to return fresh storage"), False, False
        if isinstance(func, ast.Attribute) and not qualified.startswith("torch."):
            if func.attr in STORING_METHODS:
                return Kind.ESCAPE, f"{text} stores `{name}`", False, False
            if func.attr == "copy_" and keyword is None and call.args and call.args[0] is expr:
                return Kind.PURE_READ, None, False, False
        return Kind.UNKNOWN, (f"{text} may keep a reference to `{name}`, write to it, or read it "
                              "later"), False, True

    # --- context ----------------------------------------------------------------------

    def expression_of(self, node: ast.AST) -> ast.AST:
        """The nearest enclosing expression worth quoting in a message."""
        current, parent = node, self.parents.get(node)
        while isinstance(parent, (ast.expr, ast.keyword)) and not isinstance(parent, ast.Lambda):
            current, parent = parent, self.parents.get(parent)
        if isinstance(parent, ast.AugAssign):
            return parent
        return current

    def context_name(self, expr: ast.AST) -> str | None:
        target = expr.func if isinstance(expr, ast.Call) else expr
        return self.qualify(target)

    def grad_mode(self, node: ast.AST) -> str | None:
        """'no_grad' or 'inference' when `node` is lexically under such a
        context (a `with` block or a decorator of the enclosing function, the
        nearest one deciding), 'grad' when grad is re-enabled, else None."""
        current, parent = node, self.parents.get(node)
        while parent is not None:
            if isinstance(parent, (ast.With, ast.AsyncWith)) and current in parent.body:
                for item in reversed(parent.items):
                    mode = self._grad_mode_of(item.context_expr)
                    if mode:
                        return mode
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for decorator in getattr(parent, "decorator_list", []):
                    mode = self._grad_mode_of(decorator)
                    if mode:
                        return mode
                return None
            current, parent = parent, self.parents.get(parent)
        return None

    def _grad_mode_of(self, expr: ast.AST) -> str | None:
        mode = GRAD_CONTEXTS.get(self.context_name(expr) or "")
        if mode is None:
            return None
        arguments = expr.args if isinstance(expr, ast.Call) else []
        flag = arguments[0] if arguments else None
        if mode == "inference":
            if flag is None or (isinstance(flag, ast.Constant) and flag.value is True):
                return "inference"
            return "grad" if isinstance(flag, ast.Constant) and flag.value is False else "unknown"
        if mode == "set":
            if isinstance(flag, ast.Constant) and flag.value is False:
                return "no_grad"
            return "unknown" if not (isinstance(flag, ast.Constant) and flag.value is True) else "grad"
        return mode

    def _context(self, node: ast.AST, boundary: ast.AST, name: str):
        """A `with` block between the use and `boundary` that is not known to
        leave streams alone makes the use UNKNOWN (a stream context: ASYNC)."""
        current, parent = node, self.parents.get(node)
        found = None
        while parent is not None and parent is not boundary:
            if isinstance(parent, (ast.With, ast.AsyncWith)) and current in parent.body:
                for item in parent.items:
                    expr = item.context_expr
                    qualified = self.context_name(expr) or ""
                    if qualified in GRAD_CONTEXTS or qualified in HARMLESS_CONTEXTS:
                        continue
                    text = f"`with {self.quote(expr)}:` (line {parent.lineno})"
                    if "stream" in qualified.lower() or "stream" in self.quote(expr).lower():
                        return Kind.ASYNC, (f"`{name}` is used inside {text}, on another CUDA stream: "
                                            "the next merge may overwrite it while that stream still reads it")
                    found = found or (Kind.UNKNOWN, (f"`{name}` is used inside {text}, a context manager "
                                                     "not known to leave CUDA streams alone"))
            current, parent = parent, self.parents.get(parent)
        return found


def classifier_for(ctx, scope) -> UseClassifier:
    """The classifier for names of `scope` (an analysis.scopes.Scope) in a
    rule's FileContext: names resolved through the module's imports from that
    scope, merge kernels from the configuration, messages quoting the file."""
    return UseClassifier(
        ctx.index.parents,
        qualify=lambda expr: ctx.resolver.qualified_name(expr, scope),
        is_builtin=lambda name: ctx.resolver.is_builtin(name, scope),
        merge_names=last_names(ctx.config.merge_functions),
        lines=ctx.lines,
    )


DYNAMIC_BUILTINS = frozenset({"locals", "vars", "eval", "exec", "globals", "breakpoint"})
DYNAMIC_CALLS = frozenset({"sys._getframe", "inspect.currentframe", "inspect.stack", "inspect.getouterframes",
                           "inspect.trace", "sys.exc_info", "traceback.extract_stack", "traceback.walk_stack"})


def dynamic_access(scope_node: ast.AST, classifier: UseClassifier) -> str | None:
    """A call in the scope (not in nested ones) that can reach every variable by
    name or through frames (`locals()`, `eval`, `sys._getframe`): a use the
    classifier cannot see. One line naming it, or None."""
    for call in walk_scope(scope_node):
        if isinstance(call, ast.Call):
            func = call.func
            if isinstance(func, ast.Name) and func.id in DYNAMIC_BUILTINS and classifier.is_builtin(func.id) \
                    or classifier.qualify(func) in DYNAMIC_CALLS:
                return f"`{classifier.quote(call)}` (line {call.lineno}) can reach every variable of the function"
    return None


def opaque_call(region, classifier: UseClassifier, merge_names: frozenset, ignore=()):
    """The first call in the region that may change some tensor's shape, dtype
    or device in place: anything but a builtin, a torch function (without an
    `out=`, which resizes), a merge kernel, or a tensor method that keeps its
    receiver's metadata (metadata, non-aliasing, view and value-only in-place
    methods)."""
    keeps = METADATA_METHODS | NONDIFF_METHODS | set(PURE_METHODS) | VIEW_METHODS | set(INPLACE_METHODS)
    calls = sorted((n for tree in region for n in ast.walk(tree) if isinstance(n, ast.Call)),
                   key=lambda c: (c.lineno, c.col_offset))
    for call in calls:
        func = call.func
        if call in ignore or isinstance(func, ast.Name) and classifier.is_builtin(func.id):
            continue
        qualified = classifier.qualify(func) or ""
        if qualified.startswith("torch.") and not qualified.startswith("torch.ops."):
            if not any(k.arg == "out" for k in call.keywords):
                continue
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in merge_names and not qualified.startswith("torch."):
            continue
        if isinstance(func, ast.Attribute) and not qualified and func.attr in keeps:
            continue
        return call
    return None


GROWING_METHODS = frozenset({"resize_", "resize_as_"})


def uninitialised_growth(scope_node: ast.AST, classifier: UseClassifier) -> str | None:
    """A `resize_` in the scope: a tensor grown in place exposes memory the
    allocator hands back uninitialised, whose contents depend on which buffers
    were freed before, which any reuse changes. One line naming it, or None."""
    for call in walk_scope(scope_node):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in GROWING_METHODS:
            return (f"`{classifier.quote(call)}` (line {call.lineno}) may grow a tensor into uninitialised memory, "
                    "whose contents depend on which buffers are kept")
    return None


def captured_names(scope_node: ast.AST, nested_scopes) -> set[str]:
    """Names of `scope_node` that another scope may see: referenced in a nested
    function, lambda, class or comprehension, or declared global/nonlocal."""
    names = set()
    for node in ast.walk(scope_node):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    todo = [c for c in ast.iter_child_nodes(scope_node)]
    while todo:
        node = todo.pop()
        if isinstance(node, nested_scopes) and node is not scope_node:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name):
                    names.add(inner.id)
                elif isinstance(inner, ast.arg):
                    names.add(inner.arg)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return names

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
`backward()` (or silently corrupt gradients, with a kernel that bumps no
version counter), and an in-place write whose operand may require grad
(`acc += bias`) puts the buffer in a graph that a later merge into it leaves
stale. Those uses carry `grad=True` and are harmless only under a lexical
no-grad context that provably decides grad mode there (`grad_context`).

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
# Value-only in-place methods (never the shape/storage changers below). Outside
# no-grad, each is an autograd hazard unless every argument that could carry
# grad is a numeric constant (`_inplace_grad`): an operand that requires grad
# puts the buffer in a graph, which a kernel's later overwrite leaves stale.
# The value: how many leading arguments cannot carry grad (a bool mask).
INPLACE_METHODS = {"add_": 0, "sub_": 0, "zero_": 0, "fill_": 0, "copy_": 0,
                   "mul_": 0, "div_": 0, "clamp_": 0, "clamp_min_": 0,
                   "clamp_max_": 0, "addcmul_": 0, "addcdiv_": 0, "lerp_": 0,
                   "masked_fill_": 1, "exp_": 0, "neg_": 0, "abs_": 0,
                   "sqrt_": 0, "maximum_": 0, "minimum_": 0, "nan_to_num_": 0}
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
def _switches_grad_mode(qualified: str) -> bool:
    """A torch function or class that sets grad or inference mode
    (`torch.set_grad_enabled`, `torch._C._set_grad_enabled`,
    `torch.autograd.grad_mode.*`, `torch.inference_mode`, ...)."""
    if qualified in GRAD_CONTEXTS or qualified.startswith("torch.autograd.grad_mode."):
        return True
    last = qualified.rsplit(".", 1)[-1].lower().replace("_", "")
    return qualified.startswith("torch.") and not last.startswith("is") and any(
        k in last for k in ("gradenabled", "enablegrad", "nograd", "inferencemode"))


HARMLESS_CONTEXTS = frozenset({
    "torch.autograd.profiler.record_function", "torch.profiler.record_function",
    "torch.cuda.nvtx.range", "nvtx.annotate", "torch.autocast", "torch.amp.autocast",
    "torch.cuda.amp.autocast", "torch.cpu.amp.autocast", "contextlib.nullcontext",
    "warnings.catch_warnings", "torch.autograd.profiler.profile", "torch.profiler.profile",
})
# Context managers known to leave grad mode alone (entered inside a no-grad one).
GRAD_NEUTRAL_CONTEXTS = HARMLESS_CONTEXTS | {"torch.cuda.stream", "torch.cuda.device", "torch.cuda.StreamContext",
                                             "torch.device", "torch.accelerator.device_index"}
# Operators that never save an operand for backward (audited against torch
# 2.13's autograd nodes, `tests/test_safety.py::test_operator_autograd_audit`):
# `+`/`-` save no tensor (AddBackward0/SubBackward0 keep dtypes and alpha);
# `//` has no derivative (its node saves nothing and raises in backward);
# bitwise and shift operators exist only for integer and bool tensors, which
# cannot require grad. With a numeric constant as the other operand (which
# never requires grad), `*`, `/` and `%` record nothing about a buffer that
# does not require grad either; with a tensor operand that may, they save the
# buffer (`%`: RemainderBackward saves `self` for `other`'s gradient). Every
# other operator (`**`, `@`) is taken to save it.
_NEVER_SAVES = (ast.Add, ast.Sub, ast.FloorDiv, ast.BitAnd, ast.BitOr, ast.BitXor,
                ast.LShift, ast.RShift)
_SAVES_UNLESS_CONSTANT = (ast.Mult, ast.Div, ast.Mod)


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
        self._grad_cache: dict = {}
        self._breaker_cache: dict = {}

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
        mode, not_counted = self.grad_context(node) if grad and reason is None else (None, None)
        grad = grad and reason is None and mode not in ("no_grad", "inference")
        if grad:
            reason = self._grad_reason(node, name, kind, not_counted)
        if boundary is not None and kind is not Kind.ESCAPE:
            context = self._context(node, boundary, name)
            if context is not None and (reason is None or grad or context[0] is Kind.ASYNC):
                (kind, reason), grad = context, False
        return Use(name, node, kind, node.lineno, reason, resizes, grad)

    def _grad_reason(self, node: ast.Name, name: str, kind: Kind, not_counted: str | None) -> str:
        expr = f"`{self.quote(self.expression_of(node))}` (line {node.lineno})"
        if kind is Kind.INPLACE:
            statement = node
            while statement is not None and not isinstance(statement, ast.stmt):
                statement = self.parents.get(statement)
            expr = f"`{self.quote(statement or node)}` (line {node.lineno})"
            hazard = (f"{expr} may put `{name}`'s buffer in the autograd graph (an operand may require grad); "
                      "a merge into the reused buffer leaves that graph in place, so backward() silently "
                      "computes wrong gradients")
        else:
            hazard = (f"autograd may save `{name}` for backward in {expr}; a later merge overwrites the reused "
                      "buffer, so backward() raises, or silently computes wrong gradients with a kernel that "
                      "bumps no version counter (a CUDA kernel)")
        where = f" ({not_counted})" if not_counted else ""
        return (f"{hazard}; run the loop under `torch.no_grad()` or `torch.inference_mode()`{where} if no "
                "gradient flows here")

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
            # `acc += bias`: whatever the operator, an operand that may require
            # grad puts the buffer in a graph (see _inplace_grad).
            return Kind.INPLACE, None, not _is_number(parent.value), False
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
                    holder = self.parents.get(p)
                    value = getattr(holder, "value", None) if isinstance(
                        holder, (ast.Assign, ast.AugAssign, ast.AnnAssign)) else None
                    return Kind.INPLACE, None, value is None or not _is_number(value), False
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
                                  f"`{self.quote(p.target)}`: a tensor's in-place operator may save it for "
                                  f"backward (autograd), a list's `+=` keeps views of it"), False, False
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
                    arguments = [*call.args[INPLACE_METHODS[method]:],
                                 *(k.value for k in call.keywords if k.arg != "mask")]
                    return Kind.INPLACE, None, not all(_is_number(a) for a in arguments), False
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
            if func.id == "isinstance" and not self._known_classes(call.args[1] if len(call.args) == 2 else None):
                # `isinstance(x, C)` calls `type(C).__instancecheck__(C, x)`: user code given x.
                return Kind.UNKNOWN, (f"{text} hands `{name}` to the `__instancecheck__` of a class not known "
                                      "to be torch's or a builtin"), False, False
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
                # out= operators refuse autograd; `out=x` writes x (and may resize it),
                # and the call returns x itself: its result is followed like a view.
                if keyword == "out":
                    if isinstance(self.parents.get(call), ast.Expr):
                        return Kind.INPLACE, None, False, True
                    kind, reason, grad, _ = self._value(call, name)
                    return kind, reason, grad, True
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
        return Kind.UNKNOWN, (f"{text} may keep a reference to `{name}` (autograd too, saving it for "
                              "backward), write to it, or read it "
                              "later"), False, True

    def _known_classes(self, node) -> bool:
        """Is `node` a class (or a tuple of classes) whose `__instancecheck__` is
        Python's or torch's: a builtin name, or a name under `torch.`?"""
        if isinstance(node, ast.Tuple):
            return bool(node.elts) and all(self._known_classes(e) for e in node.elts)
        if isinstance(node, ast.Name) and self.is_builtin(node.id):
            return True
        return isinstance(node, (ast.Name, ast.Attribute)) and (self.qualify(node) or "").startswith("torch.")

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
        context and the lexical reading is sound there (`grad_context`);
        'grad' when grad is re-enabled; 'unknown' when a grad-mode context is
        found but does not decide; else None."""
        return self.grad_context(node)[0]

    def grad_context(self, node: ast.AST) -> tuple[str | None, str | None]:
        """(mode, why a no-grad context around `node` does not count, or None).

        Grad mode is dynamic, thread-local state; a lexical context decides it
        only where nothing in between can change it. The nearest deciding
        context counts:
        - a `with` item (the last grad-mode item of the nearest such `with`),
          unless a `with` item entered after it is not known to leave grad
          mode alone;
        - a decorator of a plain `def` that is not a generator function, and
          only the innermost decorators (others could run the body elsewhere,
          e.g. in a thread); `async def` is not covered (torch wraps the call
          that creates the coroutine, not its body);
        and a no-grad one only when its region (the `with` body or the whole
        function) holds no suspension point (`yield`, `await`, `async for`,
        `async with`: the caller may resume it in another grad mode) and no
        reference to a grad-mode switch outside a `with` item
        (`torch.set_grad_enabled(flag)` as a call, `torch._C._set_grad_enabled`,
        `torch.autograd.grad_mode.*`, a hand-called `__enter__`). What remains
        is an axiom: code the region calls leaves grad mode as it found it
        when it returns."""
        return self._grad_scan(node)[1:]

    def lexical_grad_mode(self, node: ast.AST) -> str | None:
        """The mode of the nearest grad-mode context around `node`, as written
        (whether or not it decides grad mode there): two nodes with the same
        lexical inference context run in the same inference mode unless the
        function is suspended between them."""
        return self._grad_scan(node)[0]

    def _grad_scan(self, node: ast.AST) -> tuple[str | None, str | None, str | None]:
        key = id(node)
        if key in self._grad_cache:
            return self._grad_cache[key]
        result: tuple[str | None, str | None] = (None, None)
        lexical = None
        unknown_entered = None  # a `with` item entered inside the deciding context
        current, parent = node, self.parents.get(node)
        while parent is not None:
            if isinstance(parent, ast.With) and current in parent.body:
                mode = None
                for item in reversed(parent.items):
                    mode = self._grad_mode_of(item.context_expr)
                    if mode:
                        break
                    if (self.context_name(item.context_expr) or "") not in GRAD_NEUTRAL_CONTEXTS:
                        unknown_entered = unknown_entered or (item.context_expr, parent)
                if mode:
                    text = f"`with {self.quote(item.context_expr)}:` (line {parent.lineno})"
                    lexical, result = mode, self._decides(mode, parent, parent.body, unknown_entered, text)
                    break
            elif isinstance(parent, ast.AsyncWith) and current in parent.body:
                unknown_entered = unknown_entered or (parent.items[0].context_expr, parent)
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                modes = [self._grad_mode_of(d) for d in getattr(parent, "decorator_list", [])]
                lexical = next((m for m in reversed(modes) if m), None)
                result = self._decorated(parent, unknown_entered)
                break
            current, parent = parent, self.parents.get(parent)
        self._grad_cache[key] = (lexical, *result)
        return self._grad_cache[key]

    def _decorated(self, function, unknown_entered) -> tuple[str | None, str | None]:
        decorators = getattr(function, "decorator_list", [])
        modes = [self._grad_mode_of(d) for d in decorators]
        if not any(modes):
            return None, None
        decorator = decorators[max(i for i, m in enumerate(modes) if m)]
        mode = modes[decorators.index(decorator)]
        text = f"`@{self.quote(decorator)}` (line {decorator.lineno})"
        if mode not in ("no_grad", "inference"):
            return mode, None
        if isinstance(function, ast.AsyncFunctionDef):
            return "unknown", (f"{text} on an `async def` covers only the call that creates the coroutine, "
                               "not its body")
        if not all(modes[decorators.index(decorator):]):
            return "unknown", f"{text} is not the innermost decorator: the ones below it may run the body elsewhere"
        if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in walk_scope(function)):
            return "unknown", f"{text} is on a generator function, which runs between resumptions"
        return self._decides(mode, function, function.body, unknown_entered, text)

    def _decides(self, mode, owner, body, unknown_entered, text=None) -> tuple[str | None, str | None]:
        """A no-grad `mode` of `owner` (a `with` or a decorated function)
        holds at a use inside it unless its region can change grad mode."""
        if mode not in ("no_grad", "inference"):
            return mode, None
        text = text or f"`with {self.quote(owner.items[0].context_expr)}:` (line {owner.lineno})"
        if unknown_entered is not None:
            expr, where = unknown_entered
            return "unknown", (f"{text} is followed by `{self.quote(expr)}` (line {where.lineno}), "
                               "a context manager not known to leave grad mode alone")
        breaker = self.grad_breaker(owner, body)
        if breaker is not None:
            return "unknown", f"{text} does not cover it: {breaker}"
        return mode, None

    def grad_breaker(self, owner, body) -> str | None:
        """What in `body` (of `owner`: a `with`, a function, a loop) can leave
        it running in another grad mode than it started in: a suspension
        point, a grad-mode switch outside a `with` item, a hand-called
        `__enter__`/`__exit__`. One line naming the first, or None."""
        if id(owner) in self._breaker_cache:
            return self._breaker_cache[id(owner)]
        items = {id(n) for stmt in body for w in _own_nodes(stmt) if isinstance(w, ast.With)
                 for item in w.items for n in ast.walk(item.context_expr)}
        candidates = []
        for stmt in body:
            for n in _own_nodes(stmt):
                where = f" (line {getattr(n, 'lineno', '?')})"
                if isinstance(n, SUSPENSIONS):
                    why = f"{suspension_text(n)} may resume it in the caller's grad mode"
                elif isinstance(n, ast.Attribute) and n.attr in ("__enter__", "__exit__"):
                    why = f"`{self.quote(n)}`{where} enters or leaves a context by hand"
                elif isinstance(n, (ast.Attribute, ast.Name)) and isinstance(n.ctx, ast.Load) \
                        and id(n) not in items and _switches_grad_mode(self.qualify(n) or ""):
                    why = f"`{self.quote(self.parents.get(n) or n)}`{where} may change grad mode"
                elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier() \
                        and _switches_grad_mode("torch." + n.value):  # getattr(torch, "set_grad_enabled")
                    why = f"`{self.quote(self.parents.get(n) or n)}`{where} may name a grad-mode switch"
                else:
                    continue
                candidates.append(((n.lineno, n.col_offset), why))
        found = min(candidates)[1] if candidates else None
        self._breaker_cache[id(owner)] = found
        return found

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


def _own_nodes(tree: ast.AST):
    """The nodes of `tree` in its own scope: a nested def, class or lambda
    contributes only its decorators and defaults (walk_scope from outside)."""
    holder = ast.Module(body=[tree], type_ignores=[])
    return (n for n in walk_scope(holder) if n is not holder)


SUSPENSIONS = (ast.Yield, ast.YieldFrom, ast.Await, ast.AsyncFor, ast.AsyncWith)


def suspension_text(node: ast.AST) -> str:
    what = {ast.Yield: "yield", ast.YieldFrom: "yield from", ast.Await: "await",
            ast.AsyncFor: "async for", ast.AsyncWith: "async with"}[type(node)]
    return f"`{what}` (line {node.lineno})"


def suspension_point(region) -> ast.AST | None:
    """The first point in the region's own scope where the function may be
    suspended (`yield`, `await`, `async for`, `async with`) and resumed by a
    caller in another grad or inference mode; None if there is none."""
    found = [n for tree in region for n in _own_nodes(tree) if isinstance(n, SUSPENSIONS)]
    return min(found, key=lambda n: (n.lineno, n.col_offset), default=None)


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
                           "inspect.trace", "sys.exc_info", "traceback.extract_stack", "traceback.walk_stack",
                           "importlib.import_module", "importlib.__import__", "sys.exception"})
# Names that only frame access, tracing hooks or dynamic imports use: found as an
# attribute (`f.f_locals`, `alias._getframe`) or a string (`getattr(sys, "_getframe")`)
# anywhere in the function, nested lambdas and functions included (they run in a
# frame whose `f_back` may be this function's).
FRAME_NAMES = frozenset({"_getframe", "currentframe", "f_locals", "f_back", "f_globals", "tb_frame", "gi_frame",
                         "cr_frame", "ag_frame", "__traceback__", "settrace", "setprofile", "_current_frames",
                         "getouterframes", "getinnerframes", "extract_stack", "walk_stack", "exc_info",
                         "import_module", "__import__"})
# In a nested scope these can run this function's frame through a string.
NESTED_DYNAMIC_BUILTINS = frozenset({"eval", "exec", "breakpoint", "__import__"})


def dynamic_access(scope_node: ast.AST, classifier: UseClassifier) -> str | None:
    """A call or name in the function that can reach every variable by name or
    through frames (`locals()`, `eval`, `sys._getframe`, `getattr(sys,
    "_getframe")`, `__import__("sys")`, a lambda calling `sys._getframe(1)`):
    a use the classifier cannot see. One line naming it, or None."""
    own = {id(n) for n in walk_scope(scope_node)}
    for node in ast.walk(scope_node):
        found = None
        if isinstance(node, ast.Call):
            func = node.func
            builtins_here = DYNAMIC_BUILTINS | {"__import__"} if id(node) in own else NESTED_DYNAMIC_BUILTINS
            if isinstance(func, ast.Name) and func.id in builtins_here and classifier.is_builtin(func.id) \
                    or classifier.qualify(func) in DYNAMIC_CALLS:
                found = node
        elif isinstance(node, ast.Attribute) and (node.attr in FRAME_NAMES
                                                  or classifier.qualify(node) == "sys.modules"):
            found = node
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FRAME_NAMES:
            found = classifier.parents.get(node, node)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sys", "inspect", "traceback") \
                and any(a.name in FRAME_NAMES or a.name in ("stack", "trace") for a in node.names):
            found = node  # `from sys import _getframe` in a nested function
        if found is not None:
            return (f"`{classifier.quote(found)}` (line {found.lineno}) can reach every variable of the function "
                    "(through frames or by name)")
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

"""Run a program and describe everything it did that anyone could observe.

`execute(text, meta)` calls `run(...)` from `text` on fresh inputs made from
`meta` (the same inputs every time for the same meta), and returns an Outcome:
a canonical description of the result, the caller's arguments after the call,
every value the program stored (module globals, closures, the fuzzlib store,
deferred reads), what it printed, the warnings, the exception (type and
message), the gradients of the inputs, and what it asked the allocator for
(new storages, bytes, peak bytes alive).

CPU stand-ins for CUDA semantics (see fuzzlib for the user-level ones):
- uninitialised memory (`empty*`) is filled with a constant, so a program that
  reads it is deterministic and a fix that changes what it reads is seen;
- `torch.cuda.stream(s)` and `Tensor.record_stream(s)`: every tensor read on
  the side stream is snapshotted; at the end of the call a tensor whose
  contents changed since is one the side stream may have read after it was
  overwritten (flagged in the outcome);
- `non_blocking=True` copies are replayed at the end of the call: the copy's
  destination gets the source as it is then, as an asynchronous copy would.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import signal
import sys
import threading
import types
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

FUZZLIB_PATH = Path(__file__).with_name("fuzzlib.py")
_FUZZLIB_CODE = compile(FUZZLIB_PATH.read_text(), str(FUZZLIB_PATH), "exec")
FILL = 1000.0  # what uninitialised memory holds
TIME_LIMIT = 3.0  # seconds per execution (they take milliseconds; minimising makes endless loops)

_EMPTY_OPS = {
    "aten.empty_like.default", "aten.empty.memory_format", "aten.empty_strided.default",
    "aten.new_empty.default", "aten.new_empty_strided.default", "aten.empty_permuted.default",
}

# torch.ops.fuzzlib.append(t): a custom operator that keeps its argument.
_LIB = torch.library.Library("fuzzlib", "DEF")
_LIB.define("append(Tensor x) -> ()")


def _custom_append(x):
    sys.modules["fuzzlib"].CUSTOM.append(x)


_LIB.impl("append", _custom_append, "CompositeExplicitAutograd")


def fresh_fuzzlib() -> types.ModuleType:
    module = types.ModuleType("fuzzlib")
    module.__file__ = str(FUZZLIB_PATH)
    exec(_FUZZLIB_CODE, module.__dict__)
    sys.modules["fuzzlib"] = module
    return module


# --- inputs ---------------------------------------------------------------------------

class Keeper:
    """A caller's callback (`cb`) that keeps what it is given."""

    def __init__(self):
        self.kept = []

    def __call__(self, t):
        self.kept.append(t)


class FakeStream:
    """The `side` stream argument: synchronize() is the sync point."""

    def __init__(self, mode_ref):
        self._mode = mode_ref

    def synchronize(self):
        if self._mode() is not None:
            self._mode().sync()


def make_inputs(names, meta: dict, seed: int, mode=None) -> list:
    """The arguments for run(), by parameter name: the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(meta.get("shape", (3, 4)))
    k = meta.get("k", 4)
    lengths = meta.get("lengths") or [shape[0]] * k

    def t(*s):
        return torch.randn(*s, generator=g)

    values = {
        "x": t(*shape),
        "x_lse": t(shape[0]),
        "parts": [t(n, *shape[1:]) for n in lengths],
        "lses": [t(n) for n in lengths],
        "w": t(shape[-1]).requires_grad_(),
        "state": SimpleNamespace(buf=t(*shape), last=None),
        "cb": Keeper(),
        "side": FakeStream(weakref.ref(mode) if mode is not None else (lambda: None)),
        "n": len(lengths),
        "widths": [shape[-1] + (j % 3) - 1 for j in range(len(lengths))],
    }
    return [values[name] for name in names]


# --- the dispatch mode: counts, fills, simulates streams -------------------------------

class Observer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0  # new storages created
        self.bytes = 0
        self.live = 0
        self.peak = 0
        self.known = weakref.WeakValueDictionary()  # storage key -> storage
        self.sizes = {}
        self.side_depth = 0  # > 0 inside torch.cuda.stream(...)
        self.watched = []  # (tensor, snapshot): read on a side stream / recorded
        self.copies = []  # (dst, src) of non_blocking copies
        self.stale = []  # per watched read at sync: did the buffer change since?

    def _storages(self, value, out):
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._storages(v, out)
        elif isinstance(value, dict):
            for v in value.values():
                self._storages(v, out)
        return out

    def _free(self, key):
        self.live -= self.sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = self._storages(args, self._storages(kwargs, []))
        for t in inputs:
            try:
                s = t.untyped_storage()
            except Exception:  # noqa: BLE001 (meta / sparse)
                continue
            if s._cdata not in self.known:
                self.known[s._cdata] = s  # made before the mode or outside it
        if self.side_depth:
            for t in inputs:
                self.watched.append((t, t.detach().clone()))
        out = func(*args, **kwargs)
        name = str(func)
        if name in _EMPTY_OPS and isinstance(out, torch.Tensor) and out.device.type == "cpu":
            out.fill_(True if out.dtype == torch.bool else FILL if out.is_floating_point() else 7)
        non_blocking = kwargs.get("non_blocking") or (name == "aten.copy_.default" and len(args) > 2 and args[2])
        if non_blocking:
            dst = args[0] if name == "aten.copy_.default" else out
            self.copies.append((dst, args[1] if name == "aten.copy_.default" else args[0]))
        for t in self._storages(out, []):
            try:
                s = t.untyped_storage()
            except Exception:  # noqa: BLE001
                continue
            key = s._cdata
            if key not in self.known:
                self.known[key] = s
                self.calls += 1
                self.bytes += s.nbytes()
                self.sizes[key] = s.nbytes()
                self.live += s.nbytes()
                weakref.finalize(s, self._free, key)
            elif key in self.sizes and s.nbytes() > self.sizes[key]:  # grown (out= resizes): reallocated
                self.calls += 1
                self.bytes += s.nbytes()
                self.live += s.nbytes() - self.sizes[key]
                self.sizes[key] = s.nbytes()
        self.peak = max(self.peak, self.live)
        return out

    def sync(self):
        """What the side stream and the asynchronous copies see at the sync point."""
        with _disable_current_modes(), torch.no_grad():
            for t, snapshot in self.watched:
                self.stale.append(not _bitwise_equal(t, snapshot))
            for dst, src in self.copies:
                dst.copy_(src)
        self.watched, self.copies = [], []


class _StreamContext:
    def __init__(self, mode, stream=None):
        self.mode = mode

    def __enter__(self):
        self.mode.side_depth += 1
        return self

    def __exit__(self, *exc):
        self.mode.side_depth -= 1
        return False


@contextlib.contextmanager
def _cuda_stand_ins(mode):
    saved_stream = torch.cuda.stream
    saved_record = torch.Tensor.record_stream

    def record_stream(self, stream=None):
        with _disable_current_modes():
            mode.watched.append((self, self.detach().clone()))

    torch.cuda.stream = lambda stream=None: _StreamContext(mode, stream)
    torch.Tensor.record_stream = record_stream
    try:
        yield
    finally:
        torch.cuda.stream = saved_stream
        torch.Tensor.record_stream = saved_record


class _Timeout(BaseException):
    pass


_INTERRUPTIBLE = {"<fuzzprog>", str(FUZZLIB_PATH)}


@contextlib.contextmanager
def _time_limit(seconds):
    """Raise _Timeout in the program after `seconds`, and again every 0.2 s
    while it is still running (a raise inside a finalizer is swallowed). Only
    in the program's or fuzzlib's own code: an exception in the middle of a
    lazy `import` inside torch would leave that module half-initialised for
    every later run in the process."""
    active = [True]

    def expire(signum, frame):
        if active[0] and frame is not None and frame.f_code.co_filename in _INTERRUPTIBLE:
            raise _Timeout()

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.2)
    try:
        yield
    finally:
        active[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- describing what can be observed --------------------------------------------------

def _bitwise_equal(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return _bits(a) == _bits(b)


def _bits(t):
    with torch.inference_mode():  # reads inference tensors too
        return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


class Describer:
    """A canonical, comparable description of a value graph. Storages are
    numbered in order of first appearance, so aliasing is part of it."""

    def __init__(self):
        self.storages = {}
        self.seen = {}
        self.alive = []

    def __call__(self, v, depth=0):
        if depth > 12:
            return ("deep",)
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
            return (type(v).__name__, repr(v))
        if isinstance(v, (torch.dtype, torch.device, torch.Size, torch.layout, torch.memory_format)):
            return (type(v).__name__, repr(v))
        if id(v) in self.seen:
            return ("ref", self.seen[id(v)])
        self.seen[id(v)] = len(self.seen)
        self.alive.append(v)  # ids stay unique while the description is made
        if isinstance(v, torch.Tensor):
            return self.tensor(v, depth)
        if isinstance(v, torch.UntypedStorage):
            return ("storage", self.storages.setdefault(v._cdata, len(self.storages)), bytes(v.tolist()))
        if isinstance(v, (list, tuple, set, frozenset)):
            items = list(v)
            if isinstance(v, (set, frozenset)):
                items = sorted((self(i, depth + 1) for i in items), key=repr)
                return (type(v).__name__, tuple(items))
            return (type(v).__name__, tuple(self(i, depth + 1) for i in items))
        if isinstance(v, dict):
            return ("dict", tuple((repr(k), self(val, depth + 1)) for k, val in v.items()))
        if isinstance(v, types.GeneratorType):
            with _time_limit(2.0):
                try:
                    items = list(v)
                except Exception as exc:  # noqa: BLE001
                    items = [("raised", type(exc).__name__, str(exc))]
            return ("generator", tuple(self(i, depth + 1) for i in items))
        if isinstance(v, (types.FunctionType, types.MethodType)):
            fn = getattr(v, "__func__", v)
            cells = []
            for c in fn.__closure__ or ():
                try:
                    cells.append(self(c.cell_contents, depth + 1))
                except ValueError:
                    cells.append(("empty-cell",))
            return ("function", fn.__name__, tuple(cells), self(fn.__defaults__, depth + 1),
                    self(getattr(v, "__self__", None), depth + 1) if isinstance(v, types.MethodType) else None)
        if isinstance(v, (types.ModuleType, type, types.BuiltinFunctionType)):
            return (type(v).__name__, getattr(v, "__name__", "?"))
        try:
            import numpy
            if isinstance(v, numpy.ndarray):
                return ("ndarray", str(v.dtype), v.shape, v.tobytes())
        except ImportError:  # pragma: no cover
            pass
        attrs = getattr(v, "__dict__", None)
        if isinstance(attrs, dict):
            return ("object", type(v).__name__,
                    tuple((k, self(a, depth + 1)) for k, a in sorted(attrs.items()) if not k.startswith("_")))
        return ("opaque", type(v).__name__)

    def tensor(self, t, depth):
        if t.device.type != "cpu" or t.layout != torch.strided:
            return ("tensor", str(t.device), str(t.layout), tuple(t.shape), str(t.dtype))
        s = t.untyped_storage()
        sid = self.storages.setdefault(s._cdata, len(self.storages))
        try:
            grad = self(t.grad, depth + 1) if t.is_leaf and t.grad is not None else None
            leaf = t.is_leaf
        except RuntimeError as error:  # a no_grad view whose base was then written with grad on
            grad, leaf = None, f"raises {type(error).__name__}: {str(error)[:60]}"
        return ("tensor", str(t.dtype), tuple(t.shape), tuple(t.stride()), t.storage_offset(),
                t.requires_grad, t.is_inference(), leaf, sid, _bits(t), grad)


@dataclass
class Outcome:
    result: object = None
    args: object = None
    stored: object = None
    stdout: str = ""
    warnings: tuple = ()
    exception: tuple | None = None
    backward: tuple | str | None = None  # backward() through the results after the call
    stale: tuple = ()
    calls: int = 0
    bytes: int = 0
    peak: int = 0
    notes: list = field(default_factory=list)


def _backward(result):
    """backward() after the call, through every result that has a graph: the
    caller's gradients (leaf .grad, in the arguments) are then compared too."""
    roots = [t for t in _flat(result) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    if not roots:
        return None
    try:
        sum(t.float().sum() for t in roots).backward()
    except Exception as exc:  # noqa: BLE001: an observable like any other
        return ("raised", type(exc).__name__, str(exc))
    return "ok"


def _flat(value):
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat(v)]
    return [value]


def _module_state(namespace, describe):
    items = []
    for name, value in namespace.items():
        if name.startswith("__") or isinstance(value, types.ModuleType):
            continue
        if isinstance(value, type):
            value = {k: v for k, v in vars(value).items() if not k.startswith("__")}
        elif isinstance(value, types.FunctionType) and not value.__closure__ and not value.__defaults__:
            continue
        items.append((name, describe(value)))
    return tuple(items)


def execute(text: str, meta: dict, entry: str = "run", time_limit: float = TIME_LIMIT) -> Outcome:
    seed = meta.get("input_seed", 0)
    lib = fresh_fuzzlib()
    outcome = Outcome()
    mode = Observer()
    namespace = {"__name__": "fuzzprog"}
    stdout = io.StringIO()
    result = None
    caught = []
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(stdout):
        warnings.simplefilter("always")
        torch.manual_seed(seed)
        try:
            exec(compile(text, "<fuzzprog>", "exec"), namespace)
            fn = namespace[entry]
            args = make_inputs(list(inspect.signature(fn).parameters), meta, seed, mode)
            outcome.args = args
            with _time_limit(time_limit), _cuda_stand_ins(mode), mode:
                result = fn(*args)
                if inspect.iscoroutine(result):  # an async program: nothing it awaits suspends
                    try:
                        while True:
                            result.send(None)
                    except StopIteration as stop:
                        result = stop.value
                if isinstance(result, types.GeneratorType):  # a generator program: its consumer
                    items, snapshots = [], []
                    for item in result:
                        items.append(item)
                        snapshots.append(item.detach().clone() if isinstance(item, torch.Tensor) else item)
                    result = ("yielded", items, snapshots)
                outcome.backward = _backward(result)
        except _Timeout:
            outcome.exception = ("Timeout", "")
        except Exception as exc:  # noqa: BLE001: the program's own exception is an observable
            outcome.exception = (type(exc).__name__, str(exc))
        try:
            mode.sync()
            lib.sync()
        except Exception as exc:  # noqa: BLE001
            outcome.notes.append(f"sync raised {type(exc).__name__}: {exc}")
    describe = Describer()
    outcome.result = describe(result)
    outcome.args = describe(outcome.args)
    lib_state = {k: getattr(lib, k) for k in ("STORE", "CACHE", "CUSTOM", "TRACE", "SYNCED", "WORKSPACE")}
    outcome.stored = (_module_state(namespace, describe), describe(lib_state))
    outcome.stdout = stdout.getvalue()
    outcome.warnings = tuple((w.category.__name__, str(w.message)) for w in caught)
    outcome.stale = tuple(mode.stale)
    outcome.calls, outcome.bytes, outcome.peak = mode.calls, mode.bytes, mode.peak
    return outcome


def run_program(text: str, meta: dict) -> Outcome:
    """execute(), again with a long limit when it timed out: a loaded machine or
    the first run in a process (lazy imports) is slow; an endless loop is not
    made faster by the retry."""
    outcome = execute(text, meta)
    if outcome.exception == ("Timeout", ""):
        outcome = execute(text, meta, time_limit=10 * TIME_LIMIT)
    return outcome


# Entering a dispatch mode the first time imports torch._inductor (seconds on a
# loaded machine): pay for it now, outside any time limit.
with Observer():
    torch.empty(1)


# Each observable, in the order a report names them.
OBSERVABLES = ("exception", "result", "args", "stored", "stdout", "warnings", "stale", "backward")


def differences(original: Outcome, fixed: Outcome) -> list[str]:
    """What the fixed program did differently (empty: nothing observable), and
    whether it asked the allocator for more."""
    diffs = [name for name in OBSERVABLES if getattr(original, name) != getattr(fixed, name)]
    if fixed.calls > original.calls and not (original.exception and not diffs):  # not on a shared error path
        diffs.append(f"calls {original.calls}->{fixed.calls}")
    return diffs


TENSOR_FIELDS = ("kind", "dtype", "shape", "stride", "offset", "requires_grad", "is_inference", "is_leaf",
                 "storage #", "bytes", "grad")


def explain(original: Outcome, fixed: Outcome) -> str:
    """Where the first difference is: the observable, the path into it, both sides."""
    def walk(a, b, path):
        if a == b:
            return None
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) != len(b) and len(path) == 1:
            extra = str((a + b)[min(len(a), len(b))])[:200]
            return f"{path[0]}: {len(a)} items -> {len(b)} items; first extra: {extra}"
        if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
            is_tensor = len(a) == len(TENSOR_FIELDS) and a[:1] == ("tensor",)
            for n, (u, v) in enumerate(zip(a, b)):
                found = walk(u, v, path + [TENSOR_FIELDS[n] if is_tensor else str(n)])
                if found:
                    return found
        return f"{'/'.join(path)}: {str(a)[:120]}  ->  {str(b)[:120]}"

    for name in OBSERVABLES:
        found = walk(getattr(original, name), getattr(fixed, name), [name])
        if found:
            return found
    return ""


def peak_increase(original: Outcome, fixed: Outcome) -> str | None:
    """Bytes alive at the worst moment of the call, when the fix raised them.
    Reported apart from `differences`: holding a scratch buffer between
    iterations raises the peak wherever the chunk's own computation allocates,
    so even the upstream swap form does it (see the report)."""
    if fixed.peak > original.peak and not original.exception:
        return f"peak {original.peak}->{fixed.peak}"
    return None

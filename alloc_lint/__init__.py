"""alloc-lint: find per-iteration buffer allocations in merge-and-reassign loops
of PyTorch code, and rewrite them to allocate once."""
__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that `alloc-lint check` on a warm cache
# does not import the rules, the analysis and the fix engine it never runs.
_LAZY = {
    "FixResult": "api", "check_source": "api", "fix_source": "api",
    "Config": "config",
    "Diagnostic": "diagnostics", "Edit": "diagnostics", "Fix": "diagnostics",
    "SourceError": "engine",
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:  # `alloc_lint.engine` and friends after a plain `import alloc_lint`, as before
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # a submodule that exists but lacks a dependency
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

__all__ = ["Config", "Diagnostic", "Edit", "Fix", "FixResult", "SourceError",
           "__version__", "check_source", "fix_source"]

"""The differential fuzzer: generated programs, fixed by alloc-lint, run
original against rewrite (see tests/test_differential_fuzz.py)."""


def generator(rule: str = "ALC001"):
    """(generate(seed) -> Program, classes, class names) of a rule's grammar."""
    if rule == "ALC002":
        from . import grammar_alc002 as g
    else:
        from . import grammar as g
    return g.generate, g.CLASSES, g.CLASS_NAMES

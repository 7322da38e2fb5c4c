"""Rule selectors, read the same way on the command line, in pyproject.toml and
for flake8: a code (`ALC001`), a code prefix (`ALC`, `ALC0`), a rule's kebab-case
name (`alloc-in-loop-merge`) or `ALL`. Anything else is an error that names the
closest valid selector, as Ruff's `Unknown rule selector` does."""
from __future__ import annotations

import difflib
import re

_PREFIX = re.compile(r"[A-Za-z]+[0-9]*")


class SelectorError(ValueError):
    pass


def _rules():
    from .rules import ALL_RULES  # late: rules import config, which imports this

    return ALL_RULES


def valid_selectors() -> list[str]:
    """Every selector a user might mean: codes, their prefixes, names, ALL."""
    found = {"ALL"}
    for rule in _rules():
        found.add(rule.name)
        letters = re.match(r"[A-Z]+", rule.code).group()
        found.update(rule.code[:i] for i in range(len(letters), len(rule.code) + 1))
    return sorted(found)


def suggestion(word: str, choices) -> str:
    """`; did you mean `X`?` or ""."""
    for candidate in (word, word.upper()):
        close = difflib.get_close_matches(candidate, list(choices), n=1, cutoff=0.5)
        if close:
            return f"; did you mean `{close[0]}`?"
    return ""


def selector_hint(word: str) -> str:
    """The closest whole code or name, else the closest prefix."""
    whole = [r.code for r in _rules()] + [r.name for r in _rules()]
    return suggestion(word, whole) or suggestion(word, valid_selectors())


def canonical(selector: str, where: str = "") -> str:
    """The code prefix a selector stands for ("" for ALL), or SelectorError."""
    text = selector.strip()
    for rule in _rules():
        if text.lower() == rule.name:
            return rule.code
    if text.upper() == "ALL":
        return ""
    if _PREFIX.fullmatch(text) and any(r.code.startswith(text.upper()) for r in _rules()):
        return text.upper()
    place = f" in {where}" if where else ""
    raise SelectorError(f"Unknown rule selector `{selector}`{place}{selector_hint(text)} "
                        "(`alloc-lint rules` lists codes and names)")


def parse_list(values, where: str = "") -> tuple[str, ...]:
    """Canonical prefixes of a list (or comma-separated string) of selectors."""
    if isinstance(values, str):
        values = values.split(",")
    return tuple(canonical(v, where) for v in values if v.strip())


def matches(code: str, prefixes) -> bool:
    return any(code.startswith(p) for p in prefixes)

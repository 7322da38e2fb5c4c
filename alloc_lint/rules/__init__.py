"""The rule registry: stable codes and kebab-case names, never class names."""
from __future__ import annotations

from .alc001_alloc_in_loop_merge import AllocInLoopMerge
from .alc002_concat_grows_in_loop import ConcatGrowsInLoop
from .base import FileContext, Rule

ALL_RULES: tuple[Rule, ...] = (AllocInLoopMerge(), ConcatGrowsInLoop())


def rule_by_code(code_or_name: str) -> Rule | None:
    key = code_or_name.strip()
    for rule in ALL_RULES:
        if key.upper() == rule.code or key.lower() == rule.name:
            return rule
    return None


__all__ = ["ALL_RULES", "FileContext", "Rule", "rule_by_code"]

"""Keyword rules of pfgen question files: {"t": regex} | {"and": [rules]} | {"or": [rules]}, with an importance.

The rule format is part of the question-set data (Qxx.json), so it lives with the data: `lab.eval.pfgen` scores
answers with it, and the synthetic question and instruction sets (`synth_render.text`) write and check it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NEVER = 9999  # match end of a rule that does not match: after every cut point


@dataclass(frozen=True)
class KeywordRule:
    """{"t": regex} | {"and": [rules]} | {"or": [rules]}, with an importance (1 = required)."""

    kind: str  # "t", "and" or "or"
    pattern: re.Pattern[str] | None
    children: tuple[KeywordRule, ...]
    importance: float

    def end(self, answer: str) -> int:
        """Where the rule is first satisfied: a regex's first match end; all of "and"; the first of "or"."""
        if self.pattern is not None:
            found = self.pattern.search(answer)
            return found.end() if found else NEVER
        ends = [child.end(answer) for child in self.children]
        return max(ends) if self.kind == "and" else min(ends)


def parse_rule(rule: Any) -> KeywordRule:
    """Validate and compile a rule; raises ValueError / re.error naming what is wrong."""
    if not isinstance(rule, dict):
        raise ValueError("a rule must be a JSON object")
    importance = rule.get("importance", 1.0)
    if not isinstance(importance, (int, float)) or isinstance(importance, bool):
        raise ValueError(f"importance must be a number, got {importance!r}")
    if "t" in rule:
        if not isinstance(rule["t"], str):
            raise ValueError(f'"t" must be a regex string, got {rule["t"]!r}')
        try:
            pattern = re.compile(rule["t"])
        except re.error as error:
            raise ValueError(f"invalid regex {rule['t']!r}: {error}") from error
        return KeywordRule("t", pattern, (), float(importance))
    for kind in ("and", "or"):
        if kind in rule:
            if not isinstance(rule[kind], list) or not rule[kind]:
                raise ValueError(f'"{kind}" must be a non-empty list of rules')
            return KeywordRule(kind, None, tuple(parse_rule(r) for r in rule[kind]), float(importance))
    raise ValueError('a rule needs one of "t", "and", "or"')

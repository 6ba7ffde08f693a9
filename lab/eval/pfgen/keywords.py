"""Helpfulness: does the answer say the key facts (keyword rules, `lab.data.keyword_rules`), and early enough?"""

from __future__ import annotations

from lab.data.keyword_rules import NEVER, KeywordRule, parse_rule
from lab.eval.pfgen.ngram_table import ANSWER_WINDOW

__all__ = ["NEVER", "KeywordRule", "helpfulness", "parse_rule"]  # the rules are data: lab.data.keyword_rules


def helpfulness(keywords: tuple[KeywordRule, ...], answer: str) -> float:
    """max over cut points i <= min(len, 150) of d(i) * prod(1 - importance) of keywords ending after i."""
    answer = answer[:ANSWER_WINDOW]
    values = [1 - max(i - 100, 0) / 50 for i in range(len(answer) + 1)]
    values = [v for v in values if v >= 0]
    for rule in keywords:
        factor = 1 - rule.importance
        for i in range(min(len(values), rule.end(answer))):
            values[i] *= factor
    return max(values)

"""Helpfulness: does the answer say the key facts (keyword rules, `lab.data.keyword_rules`), and early enough?"""

from __future__ import annotations

from dataclasses import dataclass

from lab.data.keyword_rules import NEVER, KeywordRule, parse_rule
from lab.eval.pfgen.ngram_table import ANSWER_WINDOW

__all__ = ["NEVER", "HelpfulnessDetails", "KeywordRule", "helpfulness", "helpfulness_details", "parse_rule"]


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


def rule_match(rule: KeywordRule, answer: str) -> tuple[int, str]:
    """(match end, name) as upstream names a rule: a regex by its text, "and" by its latest child, "or" by its
    earliest (ties: the first listed). Upstream's optional "name" key is not kept by KeywordRule; the public
    question files do not use it."""
    if rule.pattern is not None:
        found = rule.pattern.search(answer)
        return (found.end() if found else NEVER), rule.pattern.pattern
    matches = [rule_match(child, answer) for child in rule.children]
    pick = max if rule.kind == "and" else min
    return pick(matches, key=lambda match: match[0])


@dataclass(frozen=True)
class HelpfulnessDetails:
    """Why an answer got its helpfulness: upstream's `helpfulness_results` at the chosen cut point."""

    value: float
    cut: int  # the answer prefix (characters) the value is taken at: the longest one reaching the maximum
    missed: tuple[tuple[str, float], ...]  # (rule name, 1 - importance) of rules not matched within the cut
    length_discount: float  # d(cut): below 1 when the credited prefix is longer than 100 characters

    def results(self) -> list[list]:
        """Upstream's per-answer `helpfulness_results`: the missed rules, then "<k>字超過" with d(cut) when the
        cut lies k > 0 characters beyond 100 and the value is positive."""
        over = [[f"{self.cut - 100}字超過", self.length_discount]] if self.cut > 100 and self.value > 0 else []
        return [[name, factor] for name, factor in self.missed] + over


def helpfulness_details(keywords: tuple[KeywordRule, ...], answer: str) -> HelpfulnessDetails:
    """Helpfulness with its reasons, computed as upstream's KeywordScorer.score (same value as `helpfulness`)."""
    answer = answer[:ANSWER_WINDOW]
    values = [1 - max(i - 100, 0) / 50 for i in range(len(answer) + 1)]
    values = [v for v in values if v >= 0]
    matches = []
    for rule in keywords:
        end, name = rule_match(rule, answer)
        for i in range(min(len(values), end)):
            values[i] *= 1 - rule.importance
        matches.append((end, name, 1 - rule.importance))
    cut = max(reversed(range(len(values))), key=lambda i: values[i])
    missed = tuple((name, factor) for end, name, factor in matches if cut < end)
    return HelpfulnessDetails(values[cut], cut, missed, 1 - max(cut - 100, 0) / 50)

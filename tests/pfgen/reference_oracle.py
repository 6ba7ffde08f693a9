"""The metric definitions stated in plain Python, one character at a time: the oracle for the numpy code.

Slow on purpose (dicts of strings), so tests use it on small sets only.
"""

from __future__ import annotations

SKIPPED = "^$、。・「」『』（）【】［］〈〉《》"


def discount(n: int) -> float:
    return 1 - max(n - 100, 0) / 50


def new_ngrams_by_end(text: str) -> list[list[str]]:
    """Per end position p, the n-grams (1..10, never touching the first or last char) not seen before."""
    seen: set[str] = set()
    out = []
    for p in range(1, len(text)):
        row = []
        for n in range(1, min(11, p)):
            gram = text[p - n : p]
            if gram not in seen:
                seen.add(gram)
                row.append(gram)
        out.append(row)
    return out


def df_table(answers: list[str]) -> dict[str, int]:
    table: dict[str, int] = {}
    for answer in answers:
        for row in new_ngrams_by_end(f"^{answer}$"):
            for gram in row:
                table[gram] = table.get(gram, 0) + 1
    return table


def raw_fluency(table: dict[str, int], answer: str) -> float:
    running, best = 0, 0.0
    for n, row in enumerate(new_ngrams_by_end(f"^{answer}$"[:202])):
        running += sum(table.get(gram, 0) for gram in row)
        if n > 0:
            best = max(best, running * discount(n))
    return best


def fluency_discount(table: dict[str, int], answer: str) -> float:
    """d(n) at the first n where the discounted running sum is largest (1 when nothing scores), as upstream."""
    running, best, applied = 0, 0.0, 1.0
    for n, row in enumerate(new_ngrams_by_end(f"^{answer}$"[:202])):
        running += sum(table.get(gram, 0) for gram in row)
        if n > 0 and running * discount(n) > best:
            best, applied = running * discount(n), discount(n)
    return applied


def truthfulness(table: dict[str, int], answer: str, n_answers: int) -> float:
    text = f"^{answer}$"[:202]
    cover = [0] * len(text)
    for i in range(len(text) - 2):
        value = table.get(text[i : i + 3], 0)
        for j in range(i, i + 3):
            cover[j] = max(cover[j], value)
    total, count, score, best = 0.0, 0, 0.0, 0.0
    for n, (char, value) in enumerate(zip(text, cover)):
        if char in SKIPPED:
            continue
        total += min(1.0, value / n_answers * 200.0)
        count += 1
        score = total / count * discount(n)
        if n >= 100:
            best = max(best, score)
    return max(best, score)

"""Character n-gram document frequencies of one reference set, and the two metrics built on them.

Why a trie in sorted arrays instead of a dict of strings: a set of 1000 answers has ~10^6 n-grams; numpy
arrays build in a fraction of a second, save as .npy files and are searched memory-mapped, so scoring a
few answers touches only the pages it needs. Node ids are assigned level by level, which makes the key
`parent * (V + 1) + char` increase across levels: one sorted `keys` array holds the whole trie and a
node's id is its position in it plus one (0 is the root).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FLUENCY_MAX_N = 10
TRUTHFULNESS_N = 3
ANSWER_WINDOW = 200  # characters of an answer that are scored
SKIPPED_CHARS = "^$、。・「」『』（）【】［］〈〉《》"  # not credited by truthfulness


@dataclass(frozen=True)
class NgramTable:
    """DF_k(t) for every n-gram (1 <= n <= 10) of one reference set, plus that set's fluency baseline."""

    vocab: np.ndarray  # sorted code points seen in the set
    keys: np.ndarray  # sorted trie keys, parent * (len(vocab) + 1) + char index
    df: np.ndarray  # df[node - 1]: number of answers containing the node's n-gram
    n_answers: int
    baseline: float  # mean of the raw fluency of the set's own answers


def length_discount(n: np.ndarray | int) -> np.ndarray | float:
    """d(n) = 1 - max(n - 100, 0) / 50, written in the same float operations as the public scorer."""
    return 1 - np.maximum(np.asarray(n) - 100, 0) / 50


def encode(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of all texts, concatenated, and each text's length."""
    joined = "".join(texts).encode("utf-32-le", errors="surrogatepass")
    codes = np.frombuffer(joined, dtype="<u4").astype(np.int64)
    return codes, np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))


def _padded(vocab: np.ndarray, texts: Sequence[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    """(code points, vocab indices 1..V) as (len(texts), width) matrices; 0 pads, index 0 = unknown char."""
    codes, lengths = encode(texts)
    index = np.searchsorted(vocab, codes)
    known = index < len(vocab)
    known[known] = vocab[index[known]] == codes[known]
    rows = np.repeat(np.arange(len(texts)), lengths)
    cols = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    code_matrix = np.zeros((len(texts), width), dtype=np.int64)
    char_matrix = np.zeros((len(texts), width), dtype=np.int64)
    code_matrix[rows, cols] = codes
    char_matrix[rows, cols] = np.where(known, index + 1, 0)
    return code_matrix, char_matrix


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values; a sort is several times faster than np.unique's hash path on int64."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def build_table(answers: Sequence[str]) -> NgramTable:
    """Count, for each n-gram, how many answers contain it; then score the set against itself."""
    if not answers:
        raise ValueError("empty reference set")
    codes, lengths = encode(answers)
    vocab = _distinct(codes)
    radix = len(vocab) + 1
    chars = np.searchsorted(vocab, codes) + 1
    owner = np.repeat(np.arange(len(answers)), lengths)
    first_char = np.repeat(np.cumsum(lengths) - lengths, lengths)
    answer_end = first_char + lengths[owner]
    width = int(min(lengths.max(), ANSWER_WINDOW))
    contributions = np.zeros((len(answers), width + 1))
    start = np.arange(len(codes))
    parent = np.zeros(len(codes), dtype=np.int64)
    keys, dfs, offset = [], [], 0
    for n in range(1, FLUENCY_MAX_N + 1):
        fits = start + n <= answer_end[start]
        start, parent = start[fits], parent[fits]
        if len(start) == 0:
            break
        level_keys, inverse = np.unique(parent * radix + chars[start + n - 1], return_inverse=True)
        # one sort of (answer, n-gram, end) gives both the DF (distinct pairs) and each first occurrence
        end = start - first_char[start] + n
        span = int(end.max()) + 1
        ordered = np.sort((owner[start] * len(level_keys) + inverse) * span + end)
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = ordered[1:] // span != ordered[:-1] // span
        pair, end = np.divmod(ordered[first], span)
        row, node = np.divmod(pair, len(level_keys))
        df = np.bincount(node, minlength=len(level_keys)).astype(np.int32)
        scored = end <= np.minimum(lengths[row], ANSWER_WINDOW)  # the baseline scores answers like any other
        flat = row[scored] * (width + 1) + end[scored]
        contributions += np.bincount(flat, weights=df[node[scored]], minlength=contributions.size).reshape(
            contributions.shape
        )
        keys.append(level_keys)
        dfs.append(df)
        parent = offset + 1 + inverse
        offset += len(level_keys)
    raw, _ = _best_discounted(contributions, np.minimum(lengths, ANSWER_WINDOW))
    return NgramTable(vocab, np.concatenate(keys), np.concatenate(dfs), len(answers), sum(raw.tolist()) / len(answers))


def _lookup(table: NgramTable, parent: np.ndarray, chars: np.ndarray) -> np.ndarray:
    """Child node of each (parent, char); -1 where the n-gram is not in the set (or parent is -1)."""
    key = parent * (len(table.vocab) + 1) + chars
    index = np.searchsorted(table.keys, key)
    index = np.minimum(index, len(table.keys) - 1)
    found = (table.keys[index] == key) & (parent >= 0) & (chars > 0)
    return np.where(found, index + 1, -1)


def _add_first_occurrences(
    contributions: np.ndarray, row: np.ndarray, end: np.ndarray, node: np.ndarray, weight: np.ndarray
) -> None:
    """Add each n-gram's weight at the end of its first occurrence in its row (distinct n-grams count once).

    One sort of (row, node, end) finds first occurrences; a stable argsort would be twice as slow."""
    if len(row) == 0:
        return
    span = contributions.shape[1]
    order = np.argsort((row * (int(node.max()) + 1) + node) * span + end)
    row, node, end, weight = row[order], node[order], end[order], weight[order]
    first = np.ones(len(row), dtype=bool)
    first[1:] = (row[1:] != row[:-1]) | (node[1:] != node[:-1])
    flat = row[first] * span + end[first]
    contributions += np.bincount(flat, weights=weight[first], minlength=contributions.size).reshape(
        contributions.shape
    )


def _best_discounted(contributions: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max(0, max over 1 <= n <= length of S(n) d(n)), d at the first n reaching it), S the running sum of the
    contributions; the discount is 1 where nothing scores (upstream's starting value)."""
    positions = np.arange(contributions.shape[1])
    value = np.cumsum(contributions, axis=1) * length_discount(positions)
    value[:, 0] = 0.0
    value[positions[None, :] > lengths[:, None]] = 0.0
    best = value.argmax(axis=1)  # the first maximum, as upstream's strict ">" keeps the earliest n
    return value[np.arange(len(value)), best], length_discount(best)


def _raw_fluency(table: NgramTable, answers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    texts = [a[:ANSWER_WINDOW] for a in answers]
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    width = int(lengths.max(initial=0))
    _, chars = _padded(table.vocab, texts, width + FLUENCY_MAX_N)
    contributions = np.zeros((len(texts), width + 1))
    parent = np.zeros((len(texts), width), dtype=np.int64)
    for n in range(1, FLUENCY_MAX_N + 1):
        node = _lookup(table, parent, chars[:, n - 1 : n - 1 + width])
        row, col = np.nonzero(node > 0)
        if len(row) == 0:
            break
        found = node[row, col]
        _add_first_occurrences(contributions, row, col + n, found, table.df[found - 1])
        parent = node
    return _best_discounted(contributions, lengths)


def raw_fluency(table: NgramTable, answers: Sequence[str]) -> np.ndarray:
    """max(0, max_n S(n) d(n)) per answer, before dividing by the baseline; S counts distinct n-grams once."""
    return _raw_fluency(table, answers)[0]


def fluency(table: NgramTable, answers: Sequence[str]) -> np.ndarray:
    """Fluency_k per answer: raw fluency relative to the set's own answers (a typical reference scores ~1)."""
    return raw_fluency(table, answers) / table.baseline


def fluency_and_discount(table: NgramTable, answers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Fluency_k per answer and the length discount d(n) at the prefix length n that gave it (1 up to 100
    characters): how much of the answer's fluency its length cost."""
    raw, discount = _raw_fluency(table, answers)
    return raw / table.baseline, discount


def truthfulness(table: NgramTable, answers: Sequence[str]) -> np.ndarray:
    """Truthfulness_k per answer: running mean of per-character 3-gram credit, discounted by position."""
    texts = [f"^{a}$"[: ANSWER_WINDOW + 2] for a in answers]
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    width = int(lengths.max(initial=0))
    n = TRUTHFULNESS_N
    codes, chars = _padded(table.vocab, texts, width + n)
    node = np.zeros((len(texts), width), dtype=np.int64)
    for level in range(n):
        node = _lookup(table, node, chars[:, level : level + width])
    windows = np.where(node > 0, table.df[node - 1], 0)
    windows[np.arange(width)[None, :] > lengths[:, None] - n] = 0
    best_cover = windows.copy()
    for shift in range(1, n):
        best_cover[:, shift:] = np.maximum(best_cover[:, shift:], windows[:, :-shift])
    credit = np.minimum(1.0, best_cover / table.n_answers * 200.0)
    skipped = np.isin(codes[:, :width], encode([SKIPPED_CHARS])[0])
    counted = ~skipped & (np.arange(width)[None, :] < lengths[:, None])
    total = np.cumsum(np.where(counted, credit, 0.0), axis=1)
    count = np.cumsum(counted, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = total / count * length_discount(np.arange(width))
    late = counted & (np.arange(width)[None, :] >= 100)
    best = np.where(late, score, 0.0).max(axis=1, initial=0.0)
    last = np.where(counted.any(axis=1), width - 1 - np.argmax(counted[:, ::-1], axis=1), -1)
    final = np.where(last >= 0, score[np.arange(len(texts)), np.maximum(last, 0)], 0.0)
    return np.maximum(best, final)

"""What each post-training stage is measured by: task accuracy on held-out prompts and the pfgen-style score.

Task accuracy: greedy generation from the bare SFT prompt ("Q: ...\nA:"), cut at the next "Q:" or a blank line
(the pfgen completion stops), correct when every required keyword rule of the question matches. The pfgen-style
score: the lab harness (20-shot completion prompts, pfgen sampling) on the first `questions` questions of a lab
question set, scored by the pfgen scorer; 1-2 trials keep it cheap at the price of a noisier score. Likelihood
metrics on held-out preference pairs (response loss, chosen-over-rejected accuracy) show what training changed
even before greedy answers come out right. Two models answered with the same sampling seed are compared question
by question (`paired_difference`): the per-question mean over trials differs far less between them than the
score of either varies across questions, so the paired standard error is the honest error bar of a difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import math

import torch

from lab.eval.pfgen.cache import cached_tables
from lab.eval.pfgen.data import load_examples, load_questions
from lab.eval.pfgen.harness import EXAMPLES_NAME, run_pfgen, stop_strings
from lab.eval.pfgen.results import read_answers, score_answers, summarize
from lab.eval.pfgen.scorer import QuestionScorer
from lab.models.plamo.generate import generate
from lab.models.plamo.model import IGNORE_INDEX
from lab.post.dpo import encode_pairs, pair_logprobs
from lab.post.sft import pad_id

ANSWER_STOPS = stop_strings("completion")


def task_accuracy(model: Any, tokenizer: Any, examples: Sequence[Any], *, max_new_tokens: int = 48,
                  batch_size: int = 16) -> dict[str, Any]:
    """Share of `examples` (with .prompt, .category, .is_correct) answered correctly by greedy generation."""
    if not examples:
        raise ValueError("task accuracy needs at least one example")
    hits: dict[str, list[bool]] = defaultdict(list)
    samples = []
    for first in range(0, len(examples), batch_size):
        chunk = examples[first : first + batch_size]
        results = generate(model, [[model.config.bos_token_id, *tokenizer.encode(e.prompt)] for e in chunk],
                           max_new_tokens=max_new_tokens, temperature=0.0, stop_strings=ANSWER_STOPS,
                           decode=tokenizer.decode)
        for example, result in zip(chunk, results):
            answer = (result.text or "").strip()
            hits[example.category].append(example.is_correct(answer))
            if len(samples) < 4:
                samples.append({"question": example.question, "answer": answer, "expected": example.response})
    every = [h for group in hits.values() for h in group]
    return {"accuracy": sum(every) / len(every), "n": len(every),
            "by_category": {c: sum(h) / len(h) for c, h in sorted(hits.items())}, "samples": samples}


def pfgen_score(model: Any, tokenizer: Any, set_dir: Path | str, out_dir: Path | str, *, questions: int = 8,
                trials: int = 1, max_new_tokens: int = 64, batch_size: int = 8, cache_dir: Path | None = None,
                seed: str = "") -> dict[str, Any]:
    """pfgen-style score, fluency, truthfulness and helpfulness of the first `questions` questions of a set."""
    set_dir = Path(set_dir)
    every = load_questions(set_dir)
    if not 1 <= questions <= len(every):
        raise ValueError(f"questions must be in [1, {len(every)}] for {set_dir}, got {questions}")
    chosen = every[:questions]
    pool = load_examples(set_dir / EXAMPLES_NAME)
    run = run_pfgen(model, tokenizer, chosen, trials=trials, seed=seed, out_dir=out_dir, examples=pool,
                    max_new_tokens=max_new_tokens, batch_size=batch_size)
    scorers = {q.question: QuestionScorer(q, cached_tables(q, cache_dir)) for q in chosen}
    scores = score_answers(read_answers(run.result_file), scorers, source=str(run.result_file))
    report = summarize(scores)
    return {"score": report.score, "score_std": report.score_std, "fluency": report.fluency,
            "truthfulness": report.truthfulness, "helpfulness": report.helpfulness, "length": report.length,
            "questions": report.questions, "trials": report.trials, "per_question": per_question(scores)}


def per_question(scores: Sequence[Any]) -> dict[str, float]:
    """question id -> mean score over its trials (AnswerScore rows of one run)."""
    totals: dict[str, list[float]] = defaultdict(list)
    for score in scores:
        totals[score.question_id].append(score.score)
    return {qid: sum(values) / len(values) for qid, values in sorted(totals.items())}


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / sqrt(n)); one value has no spread (SE 0)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """mean(a - b) over the questions both answered, with the standard error of that mean (paired)."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        raise ValueError(f"a paired difference needs >= 2 shared questions, got {len(shared)}")
    mean, se = mean_and_se([a[q] - b[q] for q in shared])
    return {"diff": mean, "se": se, "n": float(len(shared))}


def build_question_set(*args: Any, **kwargs: Any) -> Path:
    """Moved to `synth_render.text.question_sets.build_question_set` (synthetic data generation); kept here for
    one release."""
    from synth_render.text.question_sets import build_question_set as build

    return build(*args, **kwargs)


@torch.no_grad()
def preference_metrics(model: Any, tokenizer: Any, pairs: Sequence[Any], *, max_len: int = 160,
                       batch_size: int = 16) -> dict[str, float]:
    """Held-out likelihoods, informative even when no greedy answer is right yet: the chosen response's loss
    (nats per response token) and how often the chosen response is more likely than the rejected one."""
    if not pairs:
        raise ValueError("preference metrics need at least one pair")
    was_training = model.training
    model.eval()
    device = model.output_weight.device
    rows = encode_pairs(tokenizer, pairs, bos=model.config.bos_token_id, eos=model.config.eos_token_id,
                        max_len=max_len)
    nll, tokens, wins = 0.0, 0, 0
    for first in range(0, len(rows), batch_size):
        chunk = rows[first : first + batch_size]
        chosen, rejected = pair_logprobs(model, chunk, pad_id(model), device)
        nll -= float(chosen.sum())
        tokens += sum(int((c.targets != IGNORE_INDEX).sum()) for c, _ in chunk)
        wins += int((chosen > rejected).sum())
    model.train(was_training)
    return {"response_nll": nll / tokens, "preference_accuracy": wins / len(rows), "pairs": len(rows)}

"""pfgen-bench generation harness: 20-shot prompts, sampling with the lab's PLaMo `generate`, the upstream layout.

Protocol (../shared/reference/pfgen-metrics.md, "Generation protocol"; checked against upstream pfgen.py):

- Few-shot material is questions.jsonl (one 100-character example answer per question). For a target question the
  examples are the OTHER questions' pairs, sorted by sha1(f"{seed}::{trial}::{example question}") and cut to 20.
  Trials are numbered from 1 and the seed is a string ("" by default), as upstream's, so prompts match upstream's.
- completion mode::

      ## 回答例
      Q: <example question>
      A: <example answer>

      ... (20 pairs, separated by blank lines)

      Q: <question>
      A:

  The answer is what follows "A:" (stripped), cut at "Q:" or at a blank line ("\n\n").
- qa mode: QA_INSTRUCTION, a blank line, the same "## 回答例" block, then "\n\n## 質問\nQ: <question>".
  chat mode: the system part is CHAT_INSTRUCTION + the examples block, the user turn is "Q: <question>"; for models
  without a chat template it is laid out as text (system, blank line, "ユーザー: Q: ...", "アシスタント: ").
  Neither stops at a blank line; if a qa/chat answer contains "A:", the answer is what follows it (as upstream).
- Per-trial seed: int(sha1(f"{seed}::{trial}").hexdigest(), 16) % 2**31; batch b of a trial samples with that
  seed + b. (Upstream seeds each API request per question; local batched sampling seeds per batch.)
- Sampling defaults: temperature 1.0, top_p 0.98, at most 300 new tokens.

Output (read back by results.read_answers): out_dir/config.json and out_dir/trials.jsonl.xz, trial-major (all
questions of trial 1, then trial 2, ...), one {"question", "answer", "trial", ...} object per line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from lab.eval.pfgen.data import Example, PfgenDataError, Question, load_examples

MODES = ("completion", "qa", "chat")
Mode = Literal["completion", "qa", "chat"]
HEADER = "## 回答例"
SHOTS = 20
EXAMPLES_NAME = "questions.jsonl"
DEFAULT_TRIALS = 10
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.98
DEFAULT_MAX_NEW_TOKENS = 300
QA_INSTRUCTION = "例と同様の文体及び文字数で、質問に1行で答えてください。"
CHAT_INSTRUCTION = "例と同様の文体及び文字数で、ユーザの質問に1行で答えてください。"
CHAT_USER, CHAT_ASSISTANT = "ユーザー: ", "アシスタント: "

QuestionLike = Union[str, Question, Example]


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def trial_seed(seed: str, trial: int) -> int:
    """The sampling seed of a trial (numbered from 1): sha1(f"{seed}::{trial}") modulo 2**31."""
    return int(_sha1(f"{seed}::{trial}"), 16) % 2**31


def stop_strings(mode: Mode) -> tuple[str, ...]:
    """Where an answer ends: at the next "Q:"; completion mode also at a blank line, chat at the next user turn."""
    if mode == "chat":
        return ("Q:", CHAT_USER.strip())
    return ("Q:", "\n\n") if mode == "completion" else ("Q:",)


def select_examples(
    question: str, examples: Sequence[Example], *, seed: str, trial: int, shots: int = SHOTS
) -> list[Example]:
    """The other questions' examples, ordered by sha1(f"{seed}::{trial}::{example question}"), first `shots`."""
    others = [e for e in examples if e.question != question]
    if len(others) < shots:
        raise PfgenDataError(f"{shots}-shot prompts need {shots} other questions' examples, got {len(others)}")
    return sorted(others, key=lambda e: _sha1(f"{seed}::{trial}::{e.question}"))[:shots]


def build_prompt(
    question: str, examples: Sequence[Example], *, seed: str, trial: int, mode: Mode = "completion", shots: int = SHOTS
) -> str:
    """The prompt for one question and trial (see the module docstring for the exact layout)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    chosen = select_examples(question, examples, seed=seed, trial=trial, shots=shots)
    block = HEADER + "\n" + "\n\n".join(f"Q: {e.question}\nA: {e.answer}" for e in chosen)
    if mode == "completion":
        return f"{block}\n\nQ: {question}\nA:"
    if mode == "qa":
        return f"{QA_INSTRUCTION}\n\n{block}\n\n## 質問\nQ: {question}"
    return f"{CHAT_INSTRUCTION}\n\n{block}\n\n{CHAT_USER}Q: {question}\n{CHAT_ASSISTANT}"


def clean_answer(text: str, mode: Mode) -> str:
    """The answer as upstream stores it: stripped; in qa/chat mode only what follows an "A:" if there is one."""
    if mode in ("qa", "chat") and "A:" in text:
        text = text.split("A:", 1)[1]
    return text.strip()


def _question_text(q: QuestionLike) -> str:
    return q if isinstance(q, str) else q.question


def _default_examples(questions: Sequence[QuestionLike]) -> list[Example]:
    folders = {q.path.parent for q in questions if isinstance(q, Question)}
    if len(folders) != 1:
        raise PfgenDataError(f"pass examples= (or Question objects from one data folder holding {EXAMPLES_NAME})")
    path = folders.pop() / EXAMPLES_NAME
    if not path.is_file():
        raise PfgenDataError(f"{path}: no few-shot examples file ({EXAMPLES_NAME}) next to the questions")
    return load_examples(path)


@dataclass(frozen=True)
class PfgenRun:
    """Where a run wrote its results, and how many answers."""

    out_dir: Path
    result_file: Path
    config_file: Path
    answers: int


def run_pfgen(
    model: Any,
    tokenizer: Any,
    questions: Sequence[QuestionLike],
    *,
    trials: int = DEFAULT_TRIALS,
    mode: Mode = "completion",
    seed: str = "",
    out_dir: Path | str,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    batch_size: int = 8,
    examples: Sequence[Example] | None = None,
    model_name: str | None = None,
    progress: bool = False,
) -> PfgenRun:
    """Generate `trials` answers per question with lab.models.plamo.generate and write the upstream layout.

    `examples` (few-shot pool) defaults to questions.jsonl next to the Question files; the pool is always all
    examples minus the target question, whichever subset of questions is answered.
    """
    from lab.models.plamo.generate import generate

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if trials < 1 or batch_size < 1:
        raise ValueError(f"trials and batch_size must be >= 1, got {trials} and {batch_size}")
    if not questions:
        raise ValueError("no questions to answer")
    if tokenizer.vocab_size > model.config.vocab_size:
        vocab = (tokenizer.vocab_size, model.config.vocab_size)
        raise ValueError(f"tokenizer vocabulary ({vocab[0]}) exceeds the model's ({vocab[1]})")
    pool = list(examples) if examples is not None else _default_examples(questions)
    texts = [_question_text(q) for q in questions]
    stops = stop_strings(mode)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": model_name if model_name is not None else type(model).__name__,
        "mode": mode,
        "trials": trials,
        "seed": seed,
        "shots": SHOTS,
        "questions": len(texts),
        "sampling": {
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "stop_strings": list(stops),
            "batch_size": batch_size,
        },
        "trial_seed": "int(sha1(f'{seed}::{trial}'), 16) % 2**31 + batch index; trials from 1",
    }
    config_file = out_dir / "config.json"
    config_file.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    lines: list[str] = []
    for trial in range(1, trials + 1):
        base = trial_seed(seed, trial)
        for batch, start in enumerate(range(0, len(texts), batch_size)):
            chunk = texts[start : start + batch_size]
            prompts = [tokenizer.encode(build_prompt(q, pool, seed=seed, trial=trial, mode=mode)) for q in chunk]
            began = time.perf_counter()
            results = generate(
                model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                stop_strings=stops, decode=tokenizer.decode, seed=(base + batch) % 2**63,
            )  # fmt: skip
            seconds = time.perf_counter() - began
            for question, result in zip(chunk, results):
                record = {
                    "question": question,
                    "answer": clean_answer(result.text or "", mode),
                    "trial": trial,
                    "mode": mode,
                    "finish_reason": result.finish_reason,
                    "generated_tokens": len(result.tokens),
                    "seconds": round(seconds / len(chunk), 4),
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            if progress:
                print(f"trial {trial}/{trials}: {start + len(chunk)}/{len(texts)} questions", file=sys.stderr)
    result_file = out_dir / "trials.jsonl.xz"
    tmp = out_dir / ".trials.jsonl.xz.tmp"
    tmp.write_bytes(lzma.compress("".join(lines).encode("utf-8")))
    tmp.replace(result_file)
    return PfgenRun(out_dir, result_file, config_file, len(lines))


# ----------------------------------------------------------------------------------------------- CLI


def add_pfgen_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--model DIR --data DIR --out DIR [--trials N --mode M --seed S --max-new-tokens N --questions Q01,Q02 ...]`."""
    parser.add_argument("--model", type=Path, required=True,
                        help="folder from lab.models.plamo save_pretrained that also holds a lab.data.text Tokenizer, "
                             "or a local Hugging Face causal LM folder (needs transformers)")
    parser.add_argument("--data", type=Path, required=True, help="folder of Qxx.json files and questions.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="result folder (config.json, trials.jsonl.xz)")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--mode", choices=MODES, default="completion")
    parser.add_argument("--seed", type=str, default="", help='prompt-order and sampling seed (upstream: "")')
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--questions", type=str, default=None, help="subset of question ids, e.g. Q01,Q02")
    parser.add_argument("--device", type=str, default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--cache-dir", type=Path, default=None, help="n-gram table cache for scoring")
    return parser


def select_questions(questions: Sequence[Question], ids: str | None) -> list[Question]:
    """The questions named by a comma-separated id list (all of them when None); unknown ids are an error."""
    if not ids:
        return list(questions)
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    by_id = {q.question_id: q for q in questions}
    unknown = [i for i in wanted if i not in by_id]
    if unknown:
        raise PfgenDataError(f"unknown question ids {unknown} (known: {sorted(by_id)[:5]} ...)")
    return [by_id[i] for i in wanted]


def load_model(path: Path, device: str) -> tuple[Any, Any]:
    """(model, tokenizer): a lab PLaMo checkpoint with its Tokenizer, or a Hugging Face causal LM (config.json of
    another architecture) through the adapter in hf_model."""
    from lab.eval.pfgen.hf_model import is_hf_model, load_hf_model

    if is_hf_model(path):
        return load_hf_model(path, device)
    from lab.data.text import Tokenizer
    from lab.models.plamo.checkpoint import load_pretrained

    tokenizer = Tokenizer.load(path)
    return load_pretrained(path, device=device), tokenizer


def run_pfgen_cli(args: argparse.Namespace) -> int:
    """Generate, then score with the existing scorer and print the report; 2 on bad input."""
    import torch

    from lab.eval.pfgen.data import load_questions
    from lab.eval.pfgen.results import read_answers, score_answers, summarize
    from lab.eval.pfgen.cache import cached_tables
    from lab.eval.pfgen.scorer import QuestionScorer
    from lab.models.plamo.checkpoint import CheckpointError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        questions = select_questions(load_questions(args.data), args.questions)
        model, tokenizer = load_model(args.model, device)
        run = run_pfgen(
            model, tokenizer, questions, trials=args.trials, mode=args.mode, seed=args.seed, out_dir=args.out,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
            batch_size=args.batch_size, model_name=str(args.model), progress=True,
        )  # fmt: skip
        scorers = {q.question: QuestionScorer(q, cached_tables(q, args.cache_dir)) for q in questions}
        scores = score_answers(read_answers(run.result_file), scorers, source=str(run.result_file))
    except (PfgenDataError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summarize(scores).text())
    print(f"results: {run.result_file}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_pfgen_arguments(argparse.ArgumentParser(prog="python -m lab.eval.pfgen.harness"))
    return run_pfgen_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

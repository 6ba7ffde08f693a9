"""The pfgen generation harness: 20-shot prompts, per-trial seeds, and a tiny PLaMo run scored end to end."""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma

import pytest

from lab.eval.pfgen.data import Example, PfgenDataError, load_examples, load_question
from lab.eval.pfgen.harness import (
    HEADER,
    CHAT_INSTRUCTION,
    QA_INSTRUCTION,
    clean_answer,
    add_pfgen_arguments,
    build_prompt,
    run_pfgen,
    run_pfgen_cli,
    select_examples,
    select_questions,
    stop_strings,
    trial_seed,
)
from lab.eval.pfgen.results import read_answers


def fake_examples(n: int = 30) -> list[Example]:
    return [Example(f"質問{i}は何？", f"答え{i}です。" * 3) for i in range(n)]


def shot_questions(prompt: str) -> list[str]:
    return [line[3:] for line in prompt.split("\n") if line.startswith("Q: ")]


def test_completion_prompt_format_exact():
    examples = fake_examples()
    target = examples[3].question
    prompt = build_prompt(target, examples, seed="", trial=1)
    chosen = select_examples(target, examples, seed="", trial=1)
    expected = HEADER + "\n" + "\n\n".join(f"Q: {e.question}\nA: {e.answer}" for e in chosen)
    assert prompt == expected + f"\n\nQ: {target}\nA:"
    assert prompt.startswith("## 回答例\nQ: ") and prompt.endswith(f"\n\nQ: {target}\nA:")
    keys = [hashlib.sha1(f"::1::{e.question}".encode()).hexdigest() for e in chosen]  # upstream's default key
    assert keys == sorted(keys)


def test_twenty_other_examples_in_sha1_order():
    examples = fake_examples()
    target = examples[0].question
    shots = shot_questions(build_prompt(target, examples, seed=7, trial=2))[:-1]  # the last Q: is the target
    assert len(shots) == 20 and len(set(shots)) == 20 and target not in shots
    keys = [hashlib.sha1(f"7::2::{q}".encode()).hexdigest() for q in shots]
    assert keys == sorted(keys)
    others = sorted((e.question for e in examples[1:]), key=lambda q: hashlib.sha1(f"7::2::{q}".encode()).hexdigest())
    assert shots == others[:20]
    answers = {e.question: e.answer for e in examples}
    assert all(f"Q: {q}\nA: {answers[q]}" in build_prompt(target, examples, seed=7, trial=2) for q in shots)


def test_order_deterministic_per_trial_and_seed():
    examples = fake_examples()
    target = examples[5].question
    a = build_prompt(target, examples, seed=0, trial=0)
    assert a == build_prompt(target, examples, seed=0, trial=0)
    assert shot_questions(a) != shot_questions(build_prompt(target, examples, seed=0, trial=1))
    assert shot_questions(a) != shot_questions(build_prompt(target, examples, seed=1, trial=0))


def test_too_few_examples_and_bad_mode():
    with pytest.raises(PfgenDataError, match="20 other"):
        build_prompt("質問0は何？", fake_examples(20), seed=0, trial=0)  # only 19 others
    with pytest.raises(ValueError, match="mode"):
        build_prompt("x", fake_examples(), seed=0, trial=0, mode="bogus")  # type: ignore[arg-type]


def test_qa_and_chat_wrap_the_same_examples():
    examples = fake_examples()
    target = examples[1].question
    completion = build_prompt(target, examples, seed=3, trial=1)
    qa = build_prompt(target, examples, seed=3, trial=1, mode="qa")
    chat = build_prompt(target, examples, seed=3, trial=1, mode="chat")
    block = completion[: completion.rindex("\n\nQ: ")]
    assert qa == f"{QA_INSTRUCTION}\n\n{block}\n\n## 質問\nQ: {target}"
    assert QA_INSTRUCTION == "例と同様の文体及び文字数で、質問に1行で答えてください。"
    assert chat == f"{CHAT_INSTRUCTION}\n\n{block}\n\nユーザー: Q: {target}\nアシスタント: "
    pairs = block
    assert pairs in chat and shot_questions(chat) == shot_questions(completion)[:-1]  # target is in the user turn
    assert stop_strings("completion") == ("Q:", "\n\n") and "\n\n" not in stop_strings("qa")
    assert clean_answer(" A: 答えです。 ", "qa") == "答えです。" and clean_answer(" A: x ", "completion") == "A: x"


def test_trial_seeds():
    assert trial_seed("", 1) == int(hashlib.sha1(b"::1").hexdigest(), 16) % 2**31
    seeds = {trial_seed(s, t) for s in ("", "a", "b") for t in range(1, 11)}
    assert len(seeds) == 30 and all(0 <= s < 2**31 for s in seeds)
    assert trial_seed(1, 2) == trial_seed(1, 2)


def test_upstream_examples_prompt(upstream):
    examples = load_examples(upstream / "questions.jsonl")
    target = examples[0].question
    prompt = build_prompt(target, examples, seed=0, trial=0)
    shots = shot_questions(prompt)
    assert len(shots) == 21 and shots[-1] == target and target not in shots[:-1]
    assert all(len(e.answer) == 100 for e in select_examples(target, examples, seed=0, trial=0))


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, upstream):
    """A sentencepiece tokenizer trained on a few hundred short lines and a random plamo-2-tiny sized to it."""
    import torch

    from lab.data.text import Tokenizer, TokenizerConfig
    from lab.models.plamo import create_plamo

    examples = load_examples(upstream / "questions.jsonl")
    references = next(iter(load_question(upstream / "Q01.json").answer_sets.values()))[:300]
    lines = [f"Q: {e.question}" for e in examples] + [f"A: {e.answer}" for e in examples] + references
    tokenizer = Tokenizer.train(lines, TokenizerConfig(vocab_size=1000, character_coverage=0.98, num_threads=1))
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny", vocab_size=tokenizer.vocab_size)
    folder = tmp_path_factory.mktemp("tiny")
    return model, tokenizer, folder


def test_end_to_end_tiny_model_scored(tiny_setup, upstream, tmp_path):
    from lab.eval.pfgen.cache import cached_tables
    from lab.eval.pfgen.results import score_answers, summarize
    from lab.eval.pfgen.scorer import QuestionScorer

    model, tokenizer, _ = tiny_setup
    questions = [load_question(upstream / f"Q{i:02d}.json") for i in (1, 2)]
    out = tmp_path / "run"
    run = run_pfgen(
        model, tokenizer, questions, trials=1, mode="completion", seed=0, out_dir=out, max_new_tokens=8,
        temperature=1.0, top_p=0.98, batch_size=2, model_name="plamo-2-tiny",
    )  # fmt: skip
    assert run.result_file == out / "trials.jsonl.xz" and run.answers == 2
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["model"] == "plamo-2-tiny" and config["mode"] == "completion" and config["trials"] == 1
    assert config["sampling"]["temperature"] == 1.0 and config["sampling"]["top_p"] == 0.98
    assert config["sampling"]["max_new_tokens"] == 8
    records = [json.loads(line) for line in lzma.decompress(run.result_file.read_bytes()).decode().splitlines()]
    assert [r["question"] for r in records] == [q.question for q in questions]
    assert all(r["trial"] == 1 and r["generated_tokens"] <= 8 and "\n\n" not in r["answer"] for r in records)

    answers = read_answers(out)
    scorers = {q.question: QuestionScorer(q, cached_tables(q, tmp_path / "cache")) for q in questions}
    scores = score_answers(answers, scorers, source=str(run.result_file))
    report = summarize(scores)
    assert report.questions == 2 and report.trials == 1 and 0.0 <= report.score < 1.0

    again = run_pfgen(model, tokenizer, questions, trials=1, seed=0, out_dir=tmp_path / "again", max_new_tokens=8,
                      batch_size=2)  # fmt: skip
    assert [a.answer for a in read_answers(again.result_file)] == [a.answer for a in answers]


def test_cli_generates_and_scores(tiny_setup, upstream, tmp_path, capsys):
    from lab.models.plamo import save_pretrained

    model, tokenizer, folder = tiny_setup
    save_pretrained(model, folder)
    tokenizer.save(folder)
    parser = add_pfgen_arguments(argparse.ArgumentParser())
    argv = ["--model", str(folder), "--data", str(upstream), "--out", str(tmp_path / "out"), "--trials", "1",
            "--max-new-tokens", "4", "--questions", "Q01,Q02", "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    assert run_pfgen_cli(parser.parse_args(argv)) == 0
    report = capsys.readouterr().out
    assert "over 1 trials (2 questions)" in report
    assert len(read_answers(tmp_path / "out")) == 2
    bad = parser.parse_args([*argv[:-6], "--questions", "Q99", "--cache-dir", str(tmp_path / "c")])
    assert run_pfgen_cli(bad) == 2 and "Q99" in capsys.readouterr().err


def test_select_questions_and_tokenizer_check(upstream, tiny_setup, tmp_path):
    from lab.eval.pfgen.data import load_questions
    from lab.models.plamo import create_plamo

    questions = load_questions(upstream)
    assert [q.question_id for q in select_questions(questions, "Q02,Q01")] == ["Q02", "Q01"]
    assert len(select_questions(questions, None)) == len(questions)
    _, tokenizer, _ = tiny_setup
    small = create_plamo("plamo-2-tiny")  # vocab 256 < the tokenizer's 1000
    with pytest.raises(ValueError, match="exceeds"):
        run_pfgen(small, tokenizer, questions[:1], trials=1, seed=0, out_dir=tmp_path, max_new_tokens=1)


def test_a_quantized_folder_loads_and_is_scored_by_lab_eval_pfgen(tiny_setup, upstream, tmp_path, capsys):
    """`lab post quantize` then `lab eval pfgen` on its output: the post-training stages connect (issue 19)."""
    from experiments.cli import main
    from lab.eval.pfgen.harness import load_model
    from lab.models.plamo import load_pretrained, save_pretrained
    from lab.post.quantize import QuantizedLinear

    model, tokenizer, _ = tiny_setup
    source = save_pretrained(model, tmp_path / "float")
    tokenizer.save(source)
    quantized = tmp_path / "int8"
    assert main(["post", "quantize", "--model", str(source), "--bits", "8", "--group-size", "channel",
                 "--out", str(quantized)]) == 0
    loaded = load_pretrained(quantized)
    layers = [m for m in loaded.modules() if isinstance(m, QuantizedLinear)]
    assert layers and len(layers) == len(loaded.quantization_config.modules)
    assert isinstance(load_model(quantized, "cpu")[0].model.layers.layers[0].mixer.in_proj, QuantizedLinear)

    capsys.readouterr()
    argv = ["eval", "pfgen", "--model", str(quantized), "--data", str(upstream), "--out", str(tmp_path / "out"),
            "--trials", "1", "--max-new-tokens", "4", "--questions", "Q01,Q02", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    assert "over 1 trials (2 questions)" in capsys.readouterr().out
    assert len(read_answers(tmp_path / "out")) == 2

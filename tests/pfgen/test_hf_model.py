"""A local Hugging Face causal LM in the pfgen harness: a random tiny GPT-2 and a tokenizer made here, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lab.eval.pfgen.data import load_questions
from lab.eval.pfgen.hf_model import HFModelError, is_hf_model, load_hf_model
from lab.eval.pfgen.lab_sets import main as build_set
from lab.eval.pfgen.results import read_answers

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("set") / "data"
    argv = ["--generator", "world_facts,dialogue", "--questions", "21", "--answers", "20", "--out", str(out)]
    assert build_set(argv) == 0
    return out


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, lab_set) -> Path:
    """A BPE tokenizer trained on the set's text (tokenizers library) and a random 2-layer GPT-2, saved together."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    questions = load_questions(lab_set)
    lines = [q.question for q in questions] + [a for q in questions for a in q.answer_sets["synthetic"]]
    lines += ["## 回答例", "Q: A:"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.decoder = decoders.Fuse()
    alphabet = sorted(set("".join(lines)) | set(" \n:#?"))
    bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<eos>"],
                                                       initial_alphabet=alphabet, show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<eos>")
    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=4096, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=eos, eos_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_detects_hf_folders_but_not_plamo_ones(gpt2_dir, tmp_path):
    from lab.models.plamo import create_plamo, save_pretrained

    assert is_hf_model(gpt2_dir)
    assert not is_hf_model(save_pretrained(create_plamo("plamo-2-tiny"), tmp_path / "plamo"))
    assert not is_hf_model(tmp_path / "missing")


def test_adapter_matches_uncached_and_unpadded_generation(gpt2_dir):
    """Left padding, masks and cached positions are right: batched cached greedy == one prompt at a time uncached."""
    from lab.models.plamo.generate import generate

    model, tokenizer = load_hf_model(gpt2_dir)
    assert model.config.vocab_size == tokenizer.vocab_size and model.config.eos_token_id is not None
    prompts = [tokenizer.encode(text) for text in ("Q: 合計は何ですか。\nA:", "Q: 職業\nA:")]
    assert len(prompts[0]) != len(prompts[1])
    batched = generate(model, prompts, max_new_tokens=6, temperature=0, eos_token_id=None)
    for prompt, together in zip(prompts, batched):
        alone = generate(model, [prompt], max_new_tokens=6, temperature=0, eos_token_id=None, use_cache=False)[0]
        assert alone.tokens == together.tokens and len(alone.tokens) == 6
    text = "ビテシーの職業は大工です。"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_lab_eval_pfgen_runs_a_hf_model(gpt2_dir, lab_set, tmp_path, capsys):
    from experiments.cli import main as lab

    argv = ["eval", "pfgen", "--model", str(gpt2_dir), "--data", str(lab_set), "--trials", "1", "--max-new-tokens",
            "12", "--questions", "Q01,Q02,Q03", "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert lab([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "over 1 trials (3 questions)" in capsys.readouterr().out
    answers = read_answers(tmp_path / "a")
    assert [a.question for a in answers] == [q.question for q in load_questions(lab_set)[:3]]
    assert any(a.answer for a in answers) and all("\n\n" not in a.answer for a in answers)
    assert lab([*argv, "--out", str(tmp_path / "b")]) == 0
    assert [a.answer for a in read_answers(tmp_path / "b")] == [a.answer for a in answers]


def test_clear_error_without_transformers(gpt2_dir, lab_set, tmp_path, monkeypatch, capsys):
    import argparse

    from lab.eval.pfgen.harness import add_pfgen_arguments, run_pfgen_cli

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(HFModelError, match=r"needs transformers: pip install transformers=="):
        load_hf_model(gpt2_dir)
    args = add_pfgen_arguments(argparse.ArgumentParser()).parse_args(
        ["--model", str(gpt2_dir), "--data", str(lab_set), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert run_pfgen_cli(args) == 2
    assert str(gpt2_dir) in (err := capsys.readouterr().err) and "gpt2" in err and "transformers" in err


def test_lab_imports_without_transformers():
    code = ("import sys; sys.modules['transformers'] = None; "
            "import lab.eval.pfgen, lab.eval.pfgen.harness, lab.eval.pfgen.hf_model, lab.eval.pfgen.lab_sets; "
            "from lab.eval.pfgen.harness import load_model; "
            "assert sys.modules['transformers'] is None; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

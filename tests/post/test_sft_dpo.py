"""Post-training: instruction data, SFT with response-only loss, DPO against a frozen reference, the stage table."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lab.data.text import Tokenizer, TokenizerConfig
from lab.eval.pfgen.lab_sets import build_lab_set, make_generators
from lab.models.plamo import create_plamo
from lab.models.plamo.model import IGNORE_INDEX, causal_lm_loss
from lab.post.dpo import DPOConfig, dpo_loss, encode_pairs, frozen_copy, pair_logprobs, sequence_logprobs, train_dpo
from lab.post.instruct_data import CORRUPTIONS, InstructData, InstructDataConfig
from lab.post.sft import SFTConfig, encode_example, pad_batch, train_sft
from lab.core.rundir import RunDir

TEXT = {"n_entities": 30}


@pytest.fixture(scope="module")
def data() -> InstructData:
    return InstructData(InstructDataConfig(text=TEXT))


@pytest.fixture(scope="module")
def tokenizer(data) -> Tokenizer:
    docs = [g.document(i) for g in data.generators for i in range(40)]
    docs += [e.prompt + e.completion for e in data.examples("train", 40)]
    return Tokenizer.train(docs, TokenizerConfig(vocab_size=600, character_coverage=0.98))


def tiny(vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    return create_plamo("plamo-2-tiny", vocab_size=vocab)


# ------------------------------------------------------------------------------------------------ data


def test_examples_are_deterministic_by_seed_and_index(data):
    again = InstructData(InstructDataConfig(text=TEXT))
    assert data.examples("train", 12) == again.examples("train", 12)
    assert data.examples("train", 4, start=8) == data.examples("train", 12)[8:]  # index alone fixes an example
    assert data.pairs("heldout", 6) == again.pairs("heldout", 6)
    other = InstructData(InstructDataConfig(text=TEXT, seed=1))
    assert [e.question for e in other.examples("train", 12)] != [e.question for e in data.examples("train", 12)]


def test_splits_are_disjoint_and_exclude_the_evaluation_set(data):
    generators = make_generators(data.config.generators, 0, TEXT)
    evaluation = {q.record["question"] for q in build_lab_set(generators, 24, 0, 2)}
    filtered = InstructData(InstructDataConfig(text=TEXT), exclude=evaluation)
    train = {e.question for e in filtered.examples("train", 300)}
    heldout = {e.question for e in filtered.examples("heldout", 60)}
    assert len(heldout) > 40 and not train & heldout
    assert not (train | heldout) & evaluation
    unfiltered = {e.question for e in data.examples("train", 300)} | {e.question for e in data.examples("heldout", 60)}
    assert unfiltered & evaluation  # the same draws do hit evaluation questions when nothing is excluded
    assert len({e.category for e in filtered.examples("heldout", 16)}) >= 3  # every family asks held-out questions
    with pytest.raises(ValueError, match="unknown split 'test'.*train, heldout"):
        data.example("test", 0)


def test_pairs_chosen_correct_rejected_wrong(data):
    pairs = data.pairs("train", 120)
    assert {p.corruption for p in pairs} == set(CORRUPTIONS.names())
    for pair in pairs:
        assert pair.example.is_correct(pair.chosen) and not pair.example.is_correct(pair.rejected)
        assert pair.chosen == pair.example.completion and pair.rejected.strip()
    swapped = next(p for p in pairs if p.corruption == "swap_value" and p.example.category == "arithmetic")
    digits = lambda s: sorted(set(s.replace(" ", "")) - set("0123456789"))  # noqa: E731
    assert digits(swapped.chosen) == digits(swapped.rejected)  # only a number changed


# ---------------------------------------------------------------------------------------------- SFT


def test_model_loss_ignores_minus_100():
    logits = torch.randn(1, 5, 11)
    targets = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 7, IGNORE_INDEX]])
    expected = torch.nn.functional.cross_entropy(logits[0, 2:4], targets[0, 2:4])
    assert torch.allclose(causal_lm_loss(logits, targets)[0], expected)


def test_sft_masks_prompt_tokens(data, tokenizer):
    example = data.example("train", 0)
    prompt_ids = tokenizer.encode(example.prompt)
    row = encode_example(tokenizer, example.prompt, example.completion, bos=1, eos=2, max_len=400)
    sequence = [1, *prompt_ids, *tokenizer.encode(example.completion), 2]
    assert row.inputs.tolist() == sequence[:-1]
    assert (row.targets[: len(prompt_ids)] == IGNORE_INDEX).all()
    assert row.targets[len(prompt_ids) :].tolist() == sequence[len(prompt_ids) + 1 :]
    assert tokenizer.decode(row.targets[len(prompt_ids) : -1].tolist()) == example.completion
    # no loss on the prompt: the gradient of the model's loss reaches no logit of a prompt position
    model = tiny(tokenizer.vocab_size)
    inputs, targets = pad_batch([row], pad=2)
    logits = model(inputs).logits.detach().requires_grad_(True)
    causal_lm_loss(logits, targets)[0].backward()
    assert logits.grad[0, : len(prompt_ids)].abs().sum() == 0
    assert logits.grad[0, len(prompt_ids) :].abs().sum() > 0
    with pytest.raises(ValueError, match="max_len 5 leaves no response token"):
        encode_example(tokenizer, example.prompt, example.completion, bos=1, eos=2, max_len=5)


def test_sft_lowers_response_loss_and_resumes_exactly(data, tokenizer, tmp_path):
    examples = data.examples("train", 16)
    config = SFTConfig(steps=8, batch_size=4, lr=3e-3, checkpoint_every=4, log_every=4)
    rows = [encode_example(tokenizer, e.prompt, e.completion, bos=1, eos=2, max_len=160) for e in examples]
    inputs, targets = pad_batch(rows, pad=2)
    model = tiny(tokenizer.vocab_size)
    before = model(inputs, targets).loss.item()
    run = RunDir.for_config(tmp_path, "t", "sft", {"a": 1})
    stats = train_sft(model, tokenizer, examples, config, run, seed=0)
    after = model(inputs, targets).loss.item()
    assert after < before - 0.2 and stats["steps"] == 8 and stats["resumed_from_step"] == 0
    assert (run.checkpoint_dir / "last.pt").exists()  # written at step 4
    resumed = tiny(tokenizer.vocab_size, seed=5)  # other init: everything must come from the checkpoint
    assert train_sft(resumed, tokenizer, examples, config, run, seed=0)["resumed_from_step"] == 4
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------------------------------------- DPO


def test_dpo_loss_is_log2_when_policy_is_reference(data, tokenizer):
    policy = tiny(tokenizer.vocab_size)
    reference = frozen_copy(policy)
    rows = encode_pairs(tokenizer, data.pairs("train", 6), bos=1, eos=2, max_len=160)
    policy_chosen, policy_rejected = pair_logprobs(policy, rows, 2, torch.device("cpu"))
    with torch.no_grad():
        reference_chosen, reference_rejected = pair_logprobs(reference, rows, 2, torch.device("cpu"))
    for beta in (0.1, 1.0):
        loss, stats = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
        assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
        assert stats["reward_chosen"] == pytest.approx(0, abs=1e-5)


def test_dpo_gradient_favours_chosen():
    policy_chosen = torch.tensor([-10.0, -20.0], requires_grad=True)
    policy_rejected = torch.tensor([-12.0, -15.0], requires_grad=True)
    reference = torch.tensor([-11.0, -18.0])
    loss, _ = dpo_loss(policy_chosen, policy_rejected, reference, reference, beta=0.5)
    loss.backward()
    assert (policy_chosen.grad < 0).all() and (policy_rejected.grad > 0).all()  # descent raises chosen, lowers rejected
    margin = 0.5 * ((policy_chosen - reference) - (policy_rejected - reference))
    assert loss.item() == pytest.approx(float(-torch.nn.functional.logsigmoid(margin.detach()).mean()))


def test_sequence_logprobs_sum_over_response_only(tokenizer):
    model = tiny(tokenizer.vocab_size)
    inputs = torch.tensor([[1, 5, 6, 7, 8]])
    targets = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8, 2]])
    logp = torch.log_softmax(model(inputs).logits, -1)[0]
    expected = logp[2, 7] + logp[3, 8] + logp[4, 2]
    assert torch.allclose(sequence_logprobs(model, inputs, targets), expected.reshape(1), atol=1e-5)


def test_dpo_training_raises_chosen_ratio_and_keeps_reference_frozen(data, tokenizer, tmp_path):
    policy = tiny(tokenizer.vocab_size)
    reference = frozen_copy(policy)
    frozen = {k: v.clone() for k, v in reference.state_dict().items()}
    pairs = data.pairs("train", 8)
    rows = encode_pairs(tokenizer, pairs, bos=1, eos=2, max_len=160)
    config = DPOConfig(steps=6, batch_size=4, lr=3e-3, beta=0.5, warmup_frac=0.0, log_every=1)
    run = RunDir.for_config(tmp_path, "t", "dpo", {"a": 1})
    train_dpo(policy, reference, tokenizer, pairs, config, run, seed=0)
    with torch.no_grad():
        policy_chosen, policy_rejected = pair_logprobs(policy, rows, 2, torch.device("cpu"))
        reference_chosen, reference_rejected = pair_logprobs(reference, rows, 2, torch.device("cpu"))
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    assert margin.mean() > 0 and (margin > 0).float().mean() >= 0.75
    assert all(p.grad is None and not p.requires_grad for p in reference.parameters())
    assert all(torch.equal(frozen[k], v) for k, v in reference.state_dict().items())
    logged = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert logged[0]["loss"] == pytest.approx(math.log(2), abs=0.05) and "reward_accuracy" in logged[0]


def test_dpo_bad_input(data, tokenizer, tmp_path):
    policy = tiny(tokenizer.vocab_size)
    run = RunDir.for_config(tmp_path, "t", "dpo", {"a": 1})
    pairs = data.pairs("train", 2)
    with pytest.raises(ValueError, match="must be frozen"):
        train_dpo(policy, tiny(tokenizer.vocab_size), tokenizer, pairs, DPOConfig(steps=1), run, seed=0)
    other = frozen_copy(create_plamo("plamo-2-tiny", vocab_size=tokenizer.vocab_size + 1))
    with pytest.raises(ValueError, match="share one architecture"):
        train_dpo(policy, other, tokenizer, pairs, DPOConfig(steps=1), run, seed=0)
    with pytest.raises(ValueError, match="beta must be positive"):
        train_dpo(policy, frozen_copy(policy), tokenizer, pairs, DPOConfig(beta=0.0), run, seed=0)


# ------------------------------------------------------------------------------------- the toy recipe


TOY = ["pretrain.steps=6", "pretrain.batch_size=4", "pretrain.seq_len=32", "pretrain_docs=15",
       "sft.steps=4", "sft.batch_size=4", "sft_examples=16", "dpo.steps=3",
       "dpo.batch_size=2", "dpo_pairs=8", "eval.heldout_examples=4", "eval.heldout_pairs=4", "eval.max_new_tokens=4",
       "eval.set_answers=4", "eval.pfgen_questions=1", "eval.pfgen_max_new_tokens=4", "threads=1"]


def test_toy_base_sft_dpo_writes_the_table(tmp_path):
    from experiments.post_training import load_post_training_config, run_post_training
    from lab.models.plamo import load_pretrained

    config = load_post_training_config([f"root={tmp_path}", *TOY])
    outcome = run_post_training(config)
    stages = [row["stage"] for row in outcome["rows"]]
    assert stages[:3] == ["base", "SFT", "DPO"] and len(stages) == 5  # + linear and task-arithmetic merges
    table = json.loads((tmp_path / "post_training" / "report" / "stages.json").read_text())
    assert [r["stage"] for r in table] == stages
    for row in table:
        assert 0 <= row["task_accuracy"] <= 1 and 0 <= row["pfgen_score"] <= 1 and row["response_nll"] > 0
    markdown = (tmp_path / "post_training" / "report" / "report.md").read_text()
    assert "| SFT |" in markdown and "pfgen" in markdown
    models = {label: load_pretrained(outcome["stages"][key]["weights"]) for label, key in
              (("base", "base"), ("SFT", "sft"), ("DPO", "dpo"))}
    assert all(Tokenizer.load(outcome["stages"][key]["weights"]) for key in ("base", "sft", "dpo"))
    base, sft = models["base"].state_dict(), models["SFT"].state_dict()
    assert any(not torch.equal(base[k], sft[k]) for k in base)
    first = [r["pfgen_score"] for r in table]
    assert [r["pfgen_score"] for r in run_post_training(config)["rows"]] == first  # a rerun reuses every stage


def test_bad_config_is_rejected_before_work(tmp_path):
    from experiments.post_training import load_post_training_config, main, run_post_training
    from lab.core.config import ConfigError

    with pytest.raises(ConfigError, match="sft_exampels"):
        load_post_training_config([f"root={tmp_path}", "sft_exampels=3"])
    config = load_post_training_config([f"root={tmp_path}", f"base_checkpoint={tmp_path}"])
    with pytest.raises(ValueError, match="lacks.*config.json"):
        run_post_training(config)
    assert main([f"root={tmp_path}", "dpo.beta=0"]) == 2
    assert not (tmp_path / "post_training").exists()

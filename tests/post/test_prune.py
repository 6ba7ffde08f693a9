"""Structured pruning: the slicing is exact (same shape, and zeroed parts removed), bad targets fail early,
distillation lowers the KL, and a toy prune study writes its report and a loadable pruned model."""

from __future__ import annotations

import json

import pytest
import torch

from lab.train import engine
from lab.train.lm import LMTrainConfig, TokenStream
from lab.models.plamo import create_plamo, load_pretrained
from lab.post.distill import DistillConfig, distill, distillation_loss
from lab.post.prune import (
    PruneTarget, PruneTargetError, apply_pruning, check_target, measure_importance, plan_pruning, prune_model,
)
from lab.core.rundir import RunDir

TINY = dict(hidden_size=32, num_hidden_layers=6, intermediate_size=48, vocab_size=64, num_attention_heads=4,
            num_key_value_heads=2, hidden_size_per_head=8, attention_window_size=8, full_attention_idx=(3,),
            mamba_num_heads=6, mamba_d_state=8, mamba_chunk_size=4)


def tiny(seed: int = 0, **overrides) -> torch.nn.Module:
    """A float64 tiny model with norm weights moved off their start, so every tensor matters."""
    torch.manual_seed(seed)
    model = create_plamo("plamo-2-tiny", dtype=torch.float64, **{**TINY, **overrides})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith(("q_weight", "k_weight", "A_log", "D", "dt_bias")):
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def batches(vocab: int = 64, count: int = 2, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(0, vocab, (3, 20), generator=generator)
        documents = torch.tensor([0] * 12 + [1] * 8).expand(3, 20)  # two documents per row
        out.append((ids, documents))
    return out


def logits(model, data) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(ids, document_ids=docs).logits for ids, docs in data])


def test_same_shape_reproduces_logits_exactly():
    model = tiny()
    data = batches()
    pruned, plan, _ = prune_model(model, PruneTarget(), data)
    assert pruned.config == model.config and plan.layers == tuple(range(6))
    assert torch.equal(logits(pruned, data), logits(model, data))
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(pruned.parameters(), model.parameters()))


def zero_out(model, mlp: list[int], kv_group: int, query_in_kept_group: int, mamba: list[int], unit: int) -> None:
    """Make channels, heads and one layer unit contribute exactly nothing, in every layer."""
    config = model.config
    D, I = config.head_dim, config.intermediate_size
    group = config.num_attention_heads // config.num_key_value_heads
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers.layers):
            layer.mlp.gate_up_proj.weight[[I + c for c in mlp]] = 0  # up rows: silu(gate) * 0 = 0
            if layer.kind == "mamba":
                for h in mamba:  # the x rows of a head: its conv input, SSM input and D-skip are 0
                    layer.mixer.in_proj.weight[h * 2 * D + D : (h + 1) * 2 * D] = 0
            else:
                drop = [kv_group * group + q for q in range(group)]
                drop.append((1 - kv_group) * group + query_in_kept_group)
                for h in drop:
                    layer.mixer.o_proj.weight[:, h * D : (h + 1) * D] = 0
            if index in (2 * unit, 2 * unit + 1):  # scale offset + weight = 0: the layer adds nothing
                layer.post_mixer_norm.weight.fill_(-layer.post_mixer_norm.offset)
                layer.post_mlp_norm.weight.fill_(-layer.post_mlp_norm.offset)


def test_pruning_zeroed_parts_reproduces_logits():
    model = tiny(seed=1)
    zero_out(model, mlp=[0, 5, 17, 30, 47], kv_group=0, query_in_kept_group=1, mamba=[2, 5], unit=1)
    data = batches(seed=1)
    target = PruneTarget(num_hidden_layers=4, intermediate_size=43, num_attention_heads=1, num_key_value_heads=1,
                         mamba_num_heads=4)
    pruned, plan, importance = prune_model(model, target, data)
    assert plan.layers == (0, 1, 4, 5)
    assert pruned.config.full_attention_idx == ()  # layer 3 (full attention) was in the dropped unit
    assert [int(h) for h in plan.kv_heads[5]] == [1] and [int(h) for h in plan.query_heads[5]] == [2]
    assert [int(h) for h in plan.mamba_heads[0]] == [0, 1, 3, 4]
    assert 5 not in plan.mlp[0].tolist() and len(plan.mlp[0]) == 43
    assert float(importance.units[1]) < 1e-6 < float(importance.units[0])
    assert pruned.num_parameters() < model.num_parameters()
    torch.testing.assert_close(logits(pruned, data), logits(model, data), rtol=1e-9, atol=1e-9)


def test_full_attention_layer_keeps_its_kind():
    model = tiny(seed=2)
    zero_out(model, mlp=[], kv_group=0, query_in_kept_group=0, mamba=[], unit=0)
    pruned, plan, _ = prune_model(model, PruneTarget(num_hidden_layers=4), batches())
    assert plan.layers == (2, 3, 4, 5) and pruned.config.full_attention_idx == (1,)
    assert pruned.config.layer_kinds == ("mamba", "full_attention", "mamba", "attention")


@pytest.mark.parametrize("target, message", [
    (PruneTarget(num_attention_heads=8), "exceeds the model's 4"),
    (PruneTarget(mamba_num_heads=7), "mamba_num_heads=7 exceeds"),
    (PruneTarget(num_attention_heads=3), "not divisible by num_key_value_heads=2"),
    (PruneTarget(num_attention_heads=4, num_key_value_heads=1), "query heads per key/value head"),
    (PruneTarget(num_hidden_layers=5), r"units of mamba_step=2.*valid values \[6, 4, 2\]"),
    (PruneTarget(num_hidden_layers=0), "num_hidden_layers must be a positive integer.*at least one layer"),
    (PruneTarget(intermediate_size=0), "intermediate_size must be a positive integer"),
])
def test_bad_targets_fail_before_any_work(target, message):
    model = tiny()

    def no_batches():
        raise AssertionError("calibration data was read before the target was checked")
        yield

    with pytest.raises(PruneTargetError, match=message):
        prune_model(model, target, no_batches())


def test_pruned_model_saves_and_loads(tmp_path):
    from lab.models.plamo import save_pretrained

    model = tiny()
    data = batches()
    importance = measure_importance(model, data)
    plan = plan_pruning(model.config, importance, PruneTarget(intermediate_size=16, mamba_num_heads=3))
    pruned = apply_pruning(model, plan)
    loaded = load_pretrained(save_pretrained(pruned, tmp_path / "pruned"))
    assert loaded.config.intermediate_size == 16 and loaded.config.mamba_num_heads == 3
    assert torch.equal(logits(loaded, data), logits(pruned, data))
    smaller = check_target(model.config, PruneTarget(num_attention_heads=2, num_key_value_heads=1))
    assert (smaller.num_attention_heads, smaller.num_key_value_heads) == (2, 1)


def test_distillation_lowers_kl(tmp_path):
    from lab.lm_train import stream_batch

    teacher = tiny(seed=3).float()
    with torch.no_grad():
        teacher.model.embed_tokens.weight.mul_(10)  # a sharper teacher than the near-uniform random start
    student, _, _ = prune_model(teacher, PruneTarget(num_hidden_layers=2, intermediate_size=4, mamba_num_heads=1),
                                batches())
    stream = TokenStream.pack([list(range(i, i + 30)) for i in range(0, 30)], eos=2)
    ids, targets, documents = stream_batch(stream, 1000, 8, 16, seed=5)  # held-out windows

    def kl() -> float:
        with torch.no_grad():
            _, value, _ = distillation_loss(student(ids, document_ids=documents).logits,
                                            teacher(ids, document_ids=documents).logits, targets, 2.0, 1.0)
        return float(value)

    before = kl()
    stats = distill(student, teacher, stream, LMTrainConfig(steps=15, batch_size=4, seq_len=16, lr=3e-3),
                    DistillConfig(temperature=2.0, kl_weight=1.0), RunDir(tmp_path / "distill"), seed=0)
    assert kl() < 0.7 * before and stats["last_kl"] < 0.7 * stats["first_kl"]
    assert all(p.grad is None for p in teacher.parameters())


class Preempted(Exception):
    pass


def test_an_interrupted_distillation_resumes_to_the_same_weights(tmp_path, monkeypatch):
    teacher = tiny(seed=4).float()
    stream = TokenStream.pack([list(range(i, i + 30)) for i in range(0, 30)], eos=2)
    train = LMTrainConfig(steps=6, batch_size=4, seq_len=16, lr=3e-3, checkpoint_every=2, log_every=2)
    config = DistillConfig(temperature=2.0, kl_weight=0.5)

    def student(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return create_plamo("plamo-2-tiny", **{**TINY, "num_hidden_layers": 2, "full_attention_idx": ()})

    straight = student(0)
    stats = distill(straight, teacher, stream, train, config, RunDir(tmp_path / "a"), seed=1)
    assert stats["resumed_from_step"] == 0 and stats["train_tokens"] == 6 * 4 * 16
    real_save = engine.save_checkpoint
    saves = []

    def save_twice_then_die(path, state):
        real_save(path, state)
        saves.append(state["step"])
        if len(saves) == 2:
            raise Preempted

    monkeypatch.setattr(engine, "save_checkpoint", save_twice_then_die)
    with pytest.raises(Preempted):
        distill(student(0), teacher, stream, train, config, RunDir(tmp_path / "b"), seed=1)
    assert saves == [2, 4]
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    resumed = student(7)  # another start: every weight must come from the step-4 checkpoint
    stats = distill(resumed, teacher, stream, train, config, RunDir(tmp_path / "b"), seed=1)
    assert stats["resumed_from_step"] == 4
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    assert all(p.grad is None for p in teacher.parameters())


def test_distillation_loss_is_zero_for_the_teacher_itself():
    torch.manual_seed(0)
    logits_ = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    targets[0, 0] = -100
    loss, kl, ce = distillation_loss(logits_, logits_, targets, temperature=3.0, kl_weight=1.0)
    assert abs(float(kl)) < 1e-6 and abs(float(loss)) < 1e-5
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0).validate()
    with pytest.raises(ValueError, match="kl_weight"):
        DistillConfig(kl_weight=1.5).validate()


def test_toy_study_writes_report_and_loadable_models(tmp_path):
    from experiments.prune_study import load_prune_config, run_prune_study

    config = load_prune_config([f"root={tmp_path}", "+experiment=prune_toy", "pfgen.enabled=true",
                                "pfgen.max_new_tokens=8", "pfgen.answers=10", "pfgen.trials=1"])
    result = run_prune_study(config)
    out = tmp_path / config.experiment
    report = json.loads((out / "result.json").read_text())
    text = (out / "report.md").read_text()
    assert text.startswith("# Pruning + distillation vs training from scratch") and "pfgen score" in text
    for name in ("large", "pruned", "distilled", "scratch"):
        assert report["models"][name]["bits_per_char"] > 0 and 0 <= report["models"][name]["pfgen"]["score"] <= 1
        assert (out / "pfgen" / name / "trials.jsonl.xz").is_file()
    assert set(report["comparison"]) >= {"bits_per_char_gain", "pfgen_score_gain", "pfgen_score_gain_se"}
    assert report["comparison"]["pfgen_score_gain_se"] >= 0 and "standard error" in text
    pruned = load_pretrained(out / "distilled")
    assert pruned.config == load_pretrained(out / "scratch").config
    assert pruned.num_parameters() < load_pretrained(out / "large").num_parameters()
    assert result["models"]["distilled"]["train_tokens"] == result["models"]["scratch"]["train_tokens"]



def test_study_rejects_bad_target_and_keys_before_any_work(tmp_path):
    from experiments.prune_study import load_prune_config, run_prune_study
    from lab.core.config import ConfigError

    config = load_prune_config([f"root={tmp_path}", "+experiment=prune_toy", "target.mamba_num_heads=99"])
    with pytest.raises(PruneTargetError, match="mamba_num_heads=99 exceeds the model's 4"):
        run_prune_study(config)
    assert not (tmp_path / config.experiment).exists()
    with pytest.raises(ConfigError, match="num_heads"):
        load_prune_config(["target.num_heads=2"])


def test_charged_baseline_trains_scratch_for_teacher_plus_distillation_tokens(tmp_path):
    from experiments.prune_study import charged_schedule, load_prune_config, run_prune_study

    config = load_prune_config([f"root={tmp_path}", "+experiment=prune_toy", "charge_teacher_tokens=true"])
    schedule = charged_schedule(config)
    assert schedule.steps == 10 + 20 and schedule.lr == config.small_train.lr  # 5,120 teacher + 2,560 tokens
    result = run_prune_study(config)
    models, charged = result["models"], result["comparison"]["charged"]
    assert models["scratch_charged"]["train_tokens"] == models["large"]["train_tokens"] + models["distilled"][
        "train_tokens"]
    assert result["train"]["scratch_charged"]["steps"] == 30
    assert charged["bits_per_char_gain"] == pytest.approx(models["scratch_charged"]["bits_per_char"]
                                                          - models["distilled"]["bits_per_char"])
    assert "Charged baseline (scratch_charged" in (tmp_path / config.experiment / "report.md").read_text()
    loaded = load_pretrained(tmp_path / config.experiment / "scratch_charged")
    assert loaded.config == load_pretrained(tmp_path / config.experiment / "scratch").config
    default = load_prune_config([f"root={tmp_path}", "+experiment=prune_toy"])
    assert not default.charge_teacher_tokens


def _study_result(seed: int, distilled: float, scratch: float, pfgen: dict[str, tuple[float, float]]) -> dict:
    """A result.json of the shape run_prune_study writes, with chosen numbers (pfgen: question -> (dist, scratch))."""
    def model(bits, scores, tokens):
        return {"bits_per_char": bits, "train_tokens": tokens, "pfgen": {"per_question": scores}}

    return {"config": {"seed": seed, "root": f"r{seed}", "experiment": "x", "large_train": {"steps": 5}},
            "models": {"large": model(4.0, {q: 0.5 for q in pfgen}, 900),
                       "distilled": model(distilled, {q: d for q, (d, _) in pfgen.items()}, 100),
                       "scratch": model(scratch, {q: s for q, (_, s) in pfgen.items()}, 100)}}


def test_seed_summary_pools_questions_over_seeds_and_refuses_mixed_runs(tmp_path, capsys):
    from experiments.cli import main
    from experiments.prune_study import load_results, summarize_seeds

    runs = []
    for seed, (dist, scratch, pfgen) in enumerate([(4.0, 4.5, {"Q1": (0.3, 0.1), "Q2": (0.2, 0.2), "Q3": (0.4, 0.1)}),
                                                   (4.2, 4.5, {"Q1": (0.1, 0.1), "Q2": (0.4, 0.2), "Q3": (0.3, 0.2)})]):
        runs.append(tmp_path / f"s{seed}")
        (runs[-1] / "x").mkdir(parents=True)
        (runs[-1] / "x" / "result.json").write_text(json.dumps(_study_result(seed, dist, scratch, pfgen)))
    summary = summarize_seeds(load_results(runs))
    gain = summary["baselines"]["scratch"]["bits_per_char_gain"]
    assert gain["per_seed"] == pytest.approx([0.5, 0.3]) and gain["mean"] == pytest.approx(0.4)
    assert gain["se"] == pytest.approx(0.1)  # sd 0.1414 / sqrt(2)
    pooled = summary["baselines"]["scratch"]["pfgen_score_gain"]  # per-question means over seeds: 0.1, 0.1, 0.2
    assert pooled["diff"] == pytest.approx(0.4 / 3) and pooled["n"] == 3
    assert pooled["se"] == pytest.approx(1 / 30)  # sd of (0.1, 0.1, 0.2) is 1/17.3; over sqrt(3) questions
    assert summary["baselines"]["scratch"]["pfgen_score_gain_over_seeds"]["per_seed"] == pytest.approx([0.5 / 3, 0.1])
    assert "scratch_charged" not in summary["baselines"]

    assert main(["post", "prune-summary", *map(str, runs), "--out", str(tmp_path / "sum")]) == 0
    assert "+0.4000 +- 0.1000" in capsys.readouterr().out
    assert json.loads((tmp_path / "sum" / "summary.json").read_text())["seeds"] == [0, 1]

    other = tmp_path / "other"
    other.mkdir()
    changed = _study_result(2, 4.0, 4.4, {"Q1": (0.1, 0.1), "Q2": (0.1, 0.1)})
    changed["config"]["large_train"] = {"steps": 50}
    (other / "result.json").write_text(json.dumps(changed))
    with pytest.raises(ValueError, match=r"differs .* in \['large_train'\]"):
        load_results([runs[0], other])
    with pytest.raises(ValueError, match="repeat a seed"):
        load_results([runs[0], runs[0]])
    assert main(["post", "prune-summary", str(runs[0]), str(tmp_path / "missing")]) == 2
    assert "expected one prune-study result.json" in capsys.readouterr().err


def test_stored_lab_scale_summary_is_what_its_runs_give():
    """paper/results/prune_lab holds the lab-scale runs (result.json per seed) and their pooled summary; the summary
    must follow from the runs, so a change to the pooling or a hand-edited number shows up here."""
    from pathlib import Path

    from experiments.prune_study import load_results, summarize_seeds, summary_markdown

    stored = Path(__file__).resolve().parents[2] / "paper" / "results" / "prune_lab"
    runs = sorted(stored.glob("seed*"))
    summary = summarize_seeds(load_results(runs))
    assert json.loads(json.dumps(summary)) == json.loads((stored / "summary.json").read_text())
    assert summary_markdown(summary) == (stored / "summary.md").read_text()
    assert summary["baselines"]["scratch"]["train_tokens"] == summary["distilled_train_tokens"]

"""The lab's promise under faults: nothing wrong, nothing lost.

Each test breaks something the way a crash, a full disk, a flaky file system, a second process or a crafted file
would, then checks that the lab (1) notices and names the damaged file, (2) never computes with it, and (3) still
finishes with the result an undisturbed run gives, losing at most the work since the last intact save.

    damaged checkpoint          -> named, set aside, previous checkpoint (or step 0) used; same final weights
    invalid result.json         -> named, set aside, the stage runs again
    half-written metrics line   -> cut off before the next append, which parses
    two renders of one folder   -> both succeed, identical shards (a damaged shard is named and regenerated:
                                   tests/test_synth_render.py)
    damaged pfgen n-gram cache  -> named, rebuilt; the same tables
    crafted dataset manifest    -> a shard outside the folder or a repeated sample key is refused
    a fit with no residual dof  -> no stderr and no interval, and a warning saying why
    a group-shared runs/ folder -> atomic writes honour the umask (no 0600 files)
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import torch

from lab.core.checkpoint import checksum_path, previous_path
from lab.core.distributed import DistributedContext
from lab.core.rundir import IntegrityWarning, RunDir, atomic_write_json, load_result
from lab.stages.skeleton import run_once
from lab.train.engine import run_steps


def train(run: RunDir | None, stop_at: int | None = None) -> tuple[torch.nn.Module, dict]:
    """30 deterministic steps of a tiny regression, a checkpoint every 10; `stop_at` plays a preemption."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    y = x.sum(dim=1, keepdim=True)

    def step_loss(step: int) -> torch.Tensor:
        rows = slice(8 * (step % 4), 8 * (step % 4) + 8)
        return torch.nn.functional.mse_loss(model(x[rows]), y[rows])

    stats = run_steps(model, optimizer, step_loss, steps=30, lr_at=lambda step: 0.05, run=run, stop_at=stop_at,
                      checkpoint_every=10, log_every=5)
    return model, stats


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for left, right in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(left, right, rtol=0, atol=0)


def flip_bytes(path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(255 - b for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def test_a_corrupt_checkpoint_is_named_set_aside_and_the_previous_one_resumed(tmp_path):
    reference, _ = train(None)
    run = RunDir(tmp_path / "run")
    train(run, stop_at=25)  # checkpoints at steps 10 (kept as previous) and 20 (last)
    last = run.checkpoint_dir / "last.pt"
    assert checksum_path(last).exists() and previous_path(last).exists()
    flip_bytes(last)
    with pytest.warns(IntegrityWarning, match=r"last\.pt is corrupt.*resuming from the previous checkpoint"):
        resumed, stats = train(run)
    assert stats["resumed_from_step"] == 10
    assert_same_weights(reference, resumed)  # nothing wrong: the corrupt state was never trained on
    assert list(run.checkpoint_dir.glob("last.pt.invalid-*")), "the damaged file is kept aside for a look"


def test_a_truncated_only_checkpoint_restarts_from_step_0_and_never_blocks(tmp_path):
    reference, _ = train(None)
    run = RunDir(tmp_path / "run")
    train(run, stop_at=15)  # one checkpoint, at step 10
    last = run.checkpoint_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.warns(IntegrityWarning, match=r"last\.pt is corrupt or truncated.*restarts from step 0"):
        resumed, stats = train(run)
    assert stats["resumed_from_step"] == 0
    assert_same_weights(reference, resumed)


def test_a_checkpoint_from_before_checksums_still_resumes(tmp_path):
    run = RunDir(tmp_path / "run")
    train(run, stop_at=25)
    last = run.checkpoint_dir / "last.pt"
    checksum_path(last).unlink()
    previous_path(last).unlink()
    checksum_path(previous_path(last)).unlink()
    with pytest.warns(IntegrityWarning, match="no checksum"):
        _, stats = train(run)
    assert stats["resumed_from_step"] == 20


@pytest.mark.parametrize("content", ['{"metrics": {"top1": 0.', "{}", "[1, 2]", ""])
def test_an_invalid_result_json_is_set_aside_and_the_stage_runs_again(tmp_path, content):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.result_path.write_text(content)
    with pytest.warns(IntegrityWarning, match=r"result\.json .*moved it to result\.json\.invalid-"):
        result = run_once(run, DistributedContext(), lambda: {"metrics": {"top1": 0.9}})
    assert result == {"metrics": {"top1": 0.9}} and run.done and run.read_result() == result
    assert [p.read_text() for p in run.path.glob("result.json.invalid-*")] == [content]


def test_a_result_without_the_keys_its_reader_needs_counts_as_not_done(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_json(path, {"run_hash": "abc"})
    with pytest.warns(IntegrityWarning, match="lacks 'metrics'"):
        assert load_result(path, required=["metrics"]) is None
    assert not path.exists()


def test_a_half_written_metrics_line_does_not_swallow_the_next_record(tmp_path):
    run = RunDir(tmp_path)
    run.log_metrics({"step": 50, "loss": 1.0})
    with open(run.metrics_path, "a") as handle:
        handle.write('{"loss": 0.9, "st')  # the process died mid-line
    with pytest.warns(IntegrityWarning, match="half-written last line"):
        run.log_metrics({"step": 100, "loss": 0.8})
    assert run.read_metrics() == [{"step": 50, "loss": 1.0}, {"step": 100, "loss": 0.8}]


def test_two_renders_of_the_same_shards_at_once_both_succeed_with_identical_bytes(tmp_path):
    from lab.data.shards import ShardedDataset, write_sharded

    def make(index: int) -> dict:
        return {"x": np.random.default_rng([7, index]).normal(size=64), "label": index % 3}

    out, errors = tmp_path / "data", []

    def render() -> None:
        try:
            for _ in range(6):
                write_sharded(out, make, 240, shard_size=8, generator={"name": "toy"}, seed=7, progress=False)
        except Exception as error:  # noqa: BLE001 - any failure of either writer fails the test
            errors.append(error)

    threads = [threading.Thread(target=render) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    loaded = ShardedDataset.open(out).load()
    np.testing.assert_array_equal(loaded["x"], np.stack([make(i)["x"] for i in range(240)]))
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_a_damaged_pfgen_ngram_cache_is_named_and_rebuilt(tmp_path, capsys):
    from lab.eval.pfgen.cache import cached_tables
    from lab.eval.pfgen.data import load_question

    answers = {"P": [f"答えは{i}回です。理由は時計の針が重なるからです。" for i in range(5)],
               "S": ["答えは二回です。", "二回重なります。", "答え"]}
    path = tmp_path / "Q01.json"
    path.write_text(json.dumps({"question_id": "Q01", "question": "何回ですか？", "category": "math", "note": "",
                                "keywords": [{"t": "答え"}], "answers": answers}, ensure_ascii=False))
    question = load_question(path)
    fresh = cached_tables(question, tmp_path / "cache")
    (entry,) = (tmp_path / "cache" / "pfgen").iterdir()
    flip_bytes(entry / "0_df.npy", count=8)
    again = cached_tables(question, tmp_path / "cache")
    assert "0_df.npy does not match" in capsys.readouterr().err
    for label, table in fresh.items():
        np.testing.assert_array_equal(again[label].df, table.df)
    assert cached_tables(question, tmp_path / "cache")  # the rebuilt entry verifies


def test_a_manifest_entry_outside_the_dataset_folder_is_refused(tmp_path):
    from lab.data.shards import ManifestError, ShardedDataset, write_sharded

    write_sharded(tmp_path / "a", lambda i: {"x": np.full(2, i)}, 8, shard_size=4, generator={}, seed=0,
                  progress=False)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    for escape in ("../b/shard-00000.npz", str(tmp_path / "a" / "shard-00000.npz")):
        manifest["shards"][0]["file"] = escape
        (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ManifestError, match="leaves the dataset folder"):
            ShardedDataset.open(tmp_path / "a")


def test_a_tar_shard_that_repeats_a_sample_is_refused(tmp_path):
    from lab.data.shards import CorruptShardError
    from lab.data.tar_shards import KEY, TAR_FORMAT, iter_tar_samples

    samples = [{KEY: f"{i:09d}", "value.json": i} for i in (0, 1, 0)]
    path = tmp_path / "shard-000000.tar"
    path.write_bytes(TAR_FORMAT.encode(samples))
    with pytest.raises(CorruptShardError, match="sample key '000000000' twice"):
        list(iter_tar_samples(path))


def test_a_fit_with_no_residual_degrees_of_freedom_claims_no_certainty():
    from analysis.fit import fit_law

    n = np.array([1000.0, 2000.0, 4000.0])
    result = fit_law(n, 200 / n + 0.3, bootstrap=200, seed=0)  # 3 points, 3 free parameters: an exact fit
    assert all(np.isnan(value) for value in result.stderr.values())
    assert all(np.isnan(bound) for interval in result.intervals.values() for bound in interval)
    assert not result.bootstrap.has_interval
    assert "no residual degrees of freedom" in result.warnings[0]
    report = result.report()
    assert "unavailable" in report and "200 of 200" not in report
    assert result.to_dict()["stderr"] == {"D": None, "alpha": None, "C": None}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_atomic_writes_in_run_directories_honour_the_umask(tmp_path, umask, mode):
    from lab.core.checkpoint import save_checkpoint

    previous = os.umask(umask)
    try:
        run = RunDir(tmp_path / "run")
        run.write_result({"metrics": {}})
        run.write_config({"a": 1})
        save_checkpoint(run.checkpoint_dir / "last.pt", {"step": 1})
    finally:
        os.umask(previous)
    for path in (run.result_path, run.path / "config.yaml", run.checkpoint_dir / "last.pt",
                 checksum_path(run.checkpoint_dir / "last.pt")):
        assert path.stat().st_mode & 0o777 == mode, path

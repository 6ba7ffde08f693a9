"""Packing stage runs into jobs (issue 20): which tasks share a job, and what a pack does with each of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.run.launch import LauncherConfig
from lab.run.pack import PARENT_FAILED, PackCall, PackEntry, PackFailedError, form_packs, point_file, tasks_per_job
from lab.run.sweep import Task


def study(renders: int = 2, pretrainings: int = 3, finetunes_each: int = 2, scratch: int = 4) -> list[Task]:
    """A study's plan in plan order: render slices, pre-trainings on all of them, their fine-tunes, scratch ones."""
    def task(key: str, stage: str, depends: list[str] = ()) -> Task:
        return Task(key=key, stage=stage, fn=None, job=None, outputs=[], depends=list(depends))

    slices = [task(f"r{i}", "render") for i in range(renders)]
    pre = [task(f"p{j}", "pretrain", [s.key for s in slices]) for j in range(pretrainings)]
    fine = [task(f"f{j}.{k}", "finetune", [f"p{j}"]) for j in range(pretrainings) for k in range(finetunes_each)]
    return slices + pre + fine + [task(f"s{k}", "finetune") for k in range(scratch)]


def keys(packs: list[list[Task]]) -> list[list[str]]:
    return [[t.key for t in pack] for pack in packs]


def test_one_task_per_job_packs_nothing():
    tasks = study()
    assert keys(form_packs(tasks, 1)) == [[t.key] for t in tasks]


def test_a_pretraining_travels_with_its_finetunes_and_packs_fill_up_to_the_limit():
    tasks = study()
    packs = keys(form_packs(tasks, 6))
    assert sorted(k for pack in packs for k in pack) == sorted(t.key for t in tasks)  # each task exactly once
    assert all(len(pack) <= 6 for pack in packs)
    where = {k: i for i, pack in enumerate(packs) for k in pack}
    for j in range(3):  # each fine-tune runs in its own pre-training's job, after it
        pack = packs[where[f"p{j}"]]
        assert all(where[f"f{j}.{k}"] == where[f"p{j}"] for k in range(2))
        assert pack.index(f"p{j}") < pack.index(f"f{j}.0")
    assert where["r0"] == where["r1"] and where["r0"] != where["p0"]  # renders together, never with what waits
    assert packs == [["r0", "r1"], ["p0", "p1", "f0.0", "f0.1", "f1.0", "f1.1"], ["p2", "f2.0", "f2.1"],
                     ["s0", "s1", "s2", "s3"]]


def test_a_pretraining_with_more_finetunes_than_fit_stands_alone_and_its_finetunes_pack_together():
    tasks = study(renders=1, pretrainings=1, finetunes_each=5, scratch=0)
    assert keys(form_packs(tasks, 3)) == [["r0"], ["p0"], ["f0.0", "f0.1", "f0.2"], ["f0.3", "f0.4"]]


def test_packs_never_wait_on_each_other_in_a_cycle():
    tasks = study(renders=3, pretrainings=5, finetunes_each=3, scratch=7)
    for limit in (1, 2, 4, 5, 16, 100):
        packs = form_packs(tasks, limit)
        where = {t.key: i for i, pack in enumerate(packs) for t in pack}
        for task in tasks:  # a parent's pack comes first (or is its own)
            assert all(where[d] <= where[task.key] for d in task.depends), limit


def test_the_default_pack_size_is_sixteen_on_slurm_and_one_locally():
    assert tasks_per_job(LauncherConfig(name="slurm")) == 16
    assert tasks_per_job(LauncherConfig(name="local")) == tasks_per_job(LauncherConfig(name="debug")) == 1
    assert tasks_per_job(LauncherConfig(name="local", tasks_per_job=4)) == 4
    assert tasks_per_job(LauncherConfig(name="slurm", tasks_per_job=4, tasks_per_node=2)) == 1  # DDP: one a job
    with pytest.raises(ValueError, match="tasks_per_job must be >= 0"):
        LauncherConfig(tasks_per_job=-1).validate()


def test_a_pack_skips_finished_tasks_records_each_one_and_goes_on_after_a_failure(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "done").write_text("x")  # finished before (a requeued pack)
    entries = [
        PackEntry("done", "touch", Path.write_text, None, [str(out / "done")], needs=[]),
        PackEntry("broken", "touch", Path.touch, out / "missing" / "b", [str(out / "missing" / "b")], needs=[]),
        PackEntry("orphan", "touch", Path.touch, out / "o", [str(out / "o")], needs=[], parents=["broken"]),
        PackEntry("ok", "touch", Path.touch, out / "ok", [str(out / "ok")], needs=[str(out / "done")]),
    ]
    outcomes = {o["key"]: o for o in PackCall(entries, str(tmp_path / "jobs"))("job1")}
    assert outcomes["done"]["ok"] and not point_file(tmp_path / "jobs", "done", "json").exists()  # not run again
    assert outcomes["broken"]["error"].startswith("FileNotFoundError")
    assert outcomes["orphan"]["error"] == PARENT_FAILED and not (out / "o").exists()
    assert outcomes["ok"]["ok"] and (out / "ok").exists()  # after the failure, the pack went on
    record = json.loads(point_file(tmp_path / "jobs", "broken", "json").read_text())
    assert record["state"] == "FAILED" and record["job_id"] == "job1"
    assert "Traceback" in Path(record["log"]).read_text()  # the task's own log
    assert "Traceback" not in Path(outcomes["ok"]["log"]).read_text()

    (out / "ok").unlink()
    with pytest.raises(PackFailedError, match="broken: FileNotFoundError"):  # on Slurm: the job fails at the end
        PackCall(entries, str(tmp_path / "jobs"), fail_job=True)("job2")
    assert (out / "ok").exists()

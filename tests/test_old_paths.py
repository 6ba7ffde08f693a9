"""Issue 17 regrouped lab/ into core, stages and run; the old flat paths stay importable for one release as
aliases of the new modules, so pickled plans and jobs written before the move keep loading."""

from __future__ import annotations

import importlib
import pickle

import pytest

OLD_TO_NEW = {
    "lab.registry": "lab.core.registry", "lab.config": "lab.core.config", "lab.rundir": "lab.core.rundir",
    "lab.checkpoint": "lab.core.checkpoint", "lab.distributed": "lab.core.distributed",
    "lab.results": "lab.core.results", "lab.launch": "lab.run.launch", "lab.sweep": "lab.run.sweep",
    "lab.slurm": "lab.run.slurm", "lab.stages3d": "lab.stages.scenes3d", "lab.text_stages": "lab.stages.text",
    "lab.batch_control": "lab.stages.batch_control", "lab.pretrain_tasks": "lab.tasks.pretrain",
}


@pytest.mark.parametrize("old, new", sorted(OLD_TO_NEW.items()))
def test_an_old_path_is_the_new_module(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def _pickled_under(obj, old_module: str) -> bytes:
    """`obj` pickled as code from before the move would have written it (protocol 0 names classes in text)."""
    data = pickle.dumps(obj, protocol=0)
    new_module = obj.__module__ if callable(obj) else type(obj).__module__
    marker = f"c{new_module}\n".encode()
    assert marker in data
    return data.replace(marker, f"c{old_module}\n".encode())


def test_a_job_pickled_under_the_old_image_stage_path_loads(tmp_path):
    from lab.stages.image import PretrainJob, run_finetune

    job = PretrainJob(root=str(tmp_path), experiment="x", dataset=str(tmp_path / "d"), dataset_id="abc",
                      n=10, seed=0)
    loaded = pickle.loads(_pickled_under(job, "lab.stages"))
    assert loaded == job and type(loaded) is PretrainJob
    assert pickle.loads(_pickled_under(run_finetune, "lab.stages")) is run_finetune


def test_the_task_finetune_stage_pickled_under_its_old_module_loads():
    from lab.stages.task_finetune import run_task_finetune

    assert pickle.loads(_pickled_under(run_task_finetune, "lab.tasks.finetune")) is run_task_finetune

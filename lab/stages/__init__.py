"""Stages: one resumable unit of work each (render, pre-train, fine-tune, text, batch control, task fine-tune).

Every stage is a function of one picklable job that runs on any executor through the same skeleton
(`skeleton.run_stage`: threads, process group, the run directory's lock, a stored result returned as is).
`image` holds the digit study's stages, `scenes3d` the 3D-scene pre-training, `text` the PLaMo text study,
`batch_control` the large-batch recipe, `task_finetune` fine-tuning on a user's dataset.
"""


SUBMODULES = ("skeleton", "image", "scenes3d", "text", "batch_control", "task_finetune")


def __getattr__(name: str):
    """Jobs pickled before issue 17 name `lab.stages.<name>` for the image stages; kept for one release."""
    import importlib

    if name in SUBMODULES or name.startswith("__"):  # `from lab.stages import text` imports the submodule itself
        raise AttributeError(f"module 'lab.stages' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module("lab.stages.image"), name)
    except AttributeError:
        raise AttributeError(f"module 'lab.stages' has no attribute {name!r}") from None

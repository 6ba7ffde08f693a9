"""Configs: Hydra overrides work, typos and impossible values are rejected before any work, the CLI explains."""

from __future__ import annotations

import pytest

from experiments.cli import main
from experiments.digits_demo import DemoConfig, validate
from lab.core.config import ConfigError, load_config, schema_keys
from tests.conftest import CONF_DIR, load_demo_config


def test_defaults_compose_to_the_embedded_dataclass_defaults():
    assert load_config(CONF_DIR, "demo", DemoConfig) == DemoConfig()


def test_overrides_and_groups_apply():
    config = load_config(CONF_DIR, "demo", DemoConfig, ["data=sklearn_digits", "finetune.lr=0.01", "model=resnet18"])
    assert config.data.name == "sklearn_digits" and config.data.test_size == 500
    assert config.finetune.lr == 0.01 and config.model.name == "resnet18"


def test_an_experiment_file_overrides_groups(tmp_path):
    config = load_demo_config(tmp_path, "data=sklearn_digits")
    assert config.experiment == "toy" and config.launcher.name == "debug"
    assert config.data.name == "sklearn_digits" and config.data.test_size == 200  # toy.yaml wins over the group


@pytest.mark.parametrize(
    "override, listed",
    [("epochz=3", "experiment, root, n, s, seeds"), ("pretrain.lrr=0.1", "epochs, min_steps, batch_size, lr")],
)
def test_unknown_keys_are_rejected_with_the_valid_keys(override, listed):
    with pytest.raises(ConfigError) as error:
        load_config(CONF_DIR, "demo", DemoConfig, [override])
    message = str(error.value)
    assert override.split("=")[0] in message
    assert listed in message


def test_schema_keys_cover_nested_configs():
    keys = schema_keys(DemoConfig)
    assert "renderer.rotation_deg" in keys and "launcher.max_parallel" in keys


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["n=[-5,100]"], "n must be >= 0"),
        (["s=[4001]", "data.test_size=1000"], "larger than the mnist fine-tuning pool"),
        (["model.name=resnet_18"], "unknown model"),
        (["data.name=imagenet"], "unknown real dataset"),
        (["launcher.name=kubernetes"], "unknown executor"),
        (["seeds=[]"], "at least one value"),
        (["pretrain.lr=0"], "pretrain.lr must be positive"),
    ],
)
def test_impossible_values_fail_before_any_work(tmp_path, overrides, message):
    config = load_demo_config(tmp_path, *overrides)
    with pytest.raises((ConfigError, KeyError), match=message):
        validate(config)
    assert not (tmp_path / "toy").exists()


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "render", "sweep", "model", "eval", "fit"):
        assert command in text


def test_cli_model_info_counts_parameters_without_weights(capsys):
    assert main(["model", "info", "plamo-2-1b"]) == 0
    assert "1,291,441,920" in capsys.readouterr().out


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    assert main(["demo", "+experiment=toy", f"root={tmp_path}", "finetune.stepz=3"]) == 2
    assert "finetune.stepz" in capsys.readouterr().err
    assert main(["demo", "+experiment=toy", f"root={tmp_path}", "n=[-1]"]) == 2


def test_cli_show_config_prints_the_resolved_config(capsys):
    assert main(["demo", "--show-config", "seeds=[7]"]) == 0
    assert "seeds:\n- 7" in capsys.readouterr().out


def test_cli_render_writes_shards_and_a_contact_sheet(tmp_path, capsys):
    out, preview = tmp_path / "digits", tmp_path / "sheet.png"
    assert main(["render", "count=30", f"out={out}", "workers=1", f"preview={preview}", "renderer.shard_size=16"]) == 0
    assert (out / "manifest.json").exists() and preview.stat().st_size > 0
    assert "30 samples" in capsys.readouterr().out


def test_an_unknown_allreduce_kind_fails_before_any_work(tmp_path):
    config = load_demo_config(tmp_path, "pretrain.allreduce.kind=butterfly")
    with pytest.raises(ConfigError, match="pretrain.allreduce.kind"):
        validate(config)


@pytest.mark.parametrize("command", [["demo"], ["render"], ["sweep"], ["model", "info"], ["eval", "pfgen-score"],
                                     ["eval", "pfgen"], ["eval", "pfgen-build-set"], ["fit"],
                                     ["render-preview"], ["train"], ["text-study"], ["long-context"],
                                     ["post", "pipeline"], ["post", "prune"], ["post", "quantize"], ["post", "merge"]])
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: lab " + " ".join(command) in capsys.readouterr().out

"""The text generator registry: a config's `name` picks the family; `text_config` builds its default config.

A family is one module in `synth_render.text` with `@TEXT_GENERATORS.register("name")` on its generator class
(which names its `config_class`); the registry imports the package's modules before its first lookup."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from lab.core.registry import Registry
from lab.core.rundir import to_plain

TEXT_GENERATORS: Registry[Any] = Registry("text generator", discover="synth_render.text")


def text_config(name: str, **overrides: Any) -> Any:
    """The family's own config class with `overrides`; unknown keys are errors that list the valid ones."""
    config_class = TEXT_GENERATORS.get(name).config_class
    valid = {f.name for f in fields(config_class)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"unknown {name} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    config = config_class(**{**overrides, "name": name})
    config.validate()
    return config


def create_text_generator(config: Any) -> Any:
    """Build the generator whose registered name is `config.name` (a dataclass, dict or OmegaConf node)."""
    plain = dict(to_plain(config))
    return TEXT_GENERATORS.get(plain["name"])(text_config(**plain))

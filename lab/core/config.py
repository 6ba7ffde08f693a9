"""Hydra configuration: configs are dataclasses (the schema), YAML files in `experiments/conf/` override them.

`load_config` composes a named config with command-line overrides and returns the dataclass instance. Any
key the schema does not have is rejected with the list of valid keys at that level, so a typo never runs
silently with a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, or an impossible value."""




def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """All dotted keys of a dataclass schema, nested dataclasses expanded."""
    hints = typing.get_type_hints(schema)
    keys = []
    for f in dataclasses.fields(schema):
        name = f"{prefix}{f.name}"
        keys.append(name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(schema_keys(hints[f.name], f"{name}."))
    return keys


def explain_unknown_key(message: str, schema: type) -> str | None:
    """Turn OmegaConf's 'Key X is not in struct' into a message that lists what is valid."""
    match = re.search(r"Key '([^']+)' (?:is )?not in", message) or re.search(r"Could not override '([^']+)'", message)
    if not match:
        return None
    full_keys = re.findall(r"full_key: ([\w.]+)", message)
    bad = full_keys[0] if full_keys else match.group(1)
    valid = schema_keys(schema)
    parent = bad.rsplit(".", 1)[0] + "." if "." in bad else ""
    siblings = [k[len(parent):] for k in valid if k.startswith(parent) and "." not in k[len(parent):]]
    close = difflib.get_close_matches(bad, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    where = f"under '{parent[:-1]}'" if parent else "at the top level"
    return f"unknown config key '{bad}'.{hint} Valid keys {where}: {', '.join(siblings)}"


def register_schema(name: str, schema: type) -> None:
    ConfigStore.instance().store(name=name, node=schema)


def load_config(conf_dir: Path | str, config_name: str, schema: type[T], overrides: Sequence[str] = ()) -> T:
    """Compose `config_name` from `conf_dir` with `overrides` and return it as a `schema` instance."""
    register_schema(f"{config_name}_schema", schema)
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except (ConfigCompositionException, HydraException, OmegaConfBaseException) as error:
        text = f"{error}\n{error.__cause__ or ''}"
        raise ConfigError(explain_unknown_key(text, schema) or f"bad config: {text.strip()}") from None


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def grid_configs(grid: Mapping[str, Sequence[Any]], base: Any, schema: type) -> list[tuple[dict[str, Any], Any]]:
    """Every combination of the grid's values applied to `base` (a `schema` instance): (overrides, config) pairs.

    Keys are dotted paths into the schema; an unknown key is a ConfigError listing the valid ones.
    """
    if any(not values for values in grid.values()):
        raise ConfigError(f"every grid axis needs at least one value: {dict(grid)}")
    keys = sorted(grid)
    cells = []
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides = dict(zip(keys, values))
        node = OmegaConf.structured(base)
        try:
            for key, value in overrides.items():
                OmegaConf.update(node, key, value, merge=False)
            cells.append((overrides, OmegaConf.to_object(node)))
        except OmegaConfBaseException as error:
            raise ConfigError(explain_unknown_key(f"{error}", schema) or f"grid {overrides}: {error}") from None
    return cells

"""PLaMo 2 language models: config, model, registry, checkpoints in the Hugging Face layout, generation, info."""

from lab.models.plamo.checkpoint import CheckpointError, load_pretrained, save_pretrained
from lab.models.plamo.config import PlamoConfig, PlamoConfigError
from lab.models.plamo.generate import Generation, generate
from lab.models.plamo.model import PlamoCache, PlamoForCausalLM, PlamoOutput, causal_lm_loss
from lab.models.plamo.registry import PLAMO_CONFIGS, create_plamo, get_plamo_config

__all__ = [
    "PLAMO_CONFIGS",
    "CheckpointError",
    "Generation",
    "PlamoCache",
    "PlamoConfig",
    "PlamoConfigError",
    "PlamoForCausalLM",
    "PlamoOutput",
    "causal_lm_loss",
    "create_plamo",
    "generate",
    "get_plamo_config",
    "load_pretrained",
    "save_pretrained",
]

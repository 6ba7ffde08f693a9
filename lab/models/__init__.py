"""Models by name. Vision backbones come from timm (`lab.models.vision`); language models are ours."""

from lab.models.vision import ModelConfig, check_model_name, create_model

__all__ = ["ModelConfig", "check_model_name", "create_model"]

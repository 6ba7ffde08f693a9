"""The PLaMo 2 configuration: one frozen dataclass with the public (Hugging Face `Plamo2Config`) field names.

Defaults are the numbers of pfnet/plamo-2-1b. `validate` runs on construction, so an impossible config fails
where it is written, not deep inside a forward pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

LayerKind = Literal["mamba", "attention", "full_attention"]
LAYER_SYMBOLS: dict[str, str] = {"mamba": "M", "attention": "A", "full_attention": "F"}

# Keys a Hugging Face config.json carries that describe the file rather than the architecture.
HF_BOOKKEEPING_KEYS = frozenset(
    {"architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "auto_map", "_name_or_path"}
)


class PlamoConfigError(ValueError):
    """A PLaMo config that cannot be built: an unknown key or sizes that do not fit together."""


@dataclass(frozen=True)
class PlamoConfig:
    hidden_size: int = 2048
    num_hidden_layers: int = 16
    intermediate_size: int = 8192
    vocab_size: int = 100_000
    num_attention_heads: int = 16
    num_key_value_heads: int = 1
    hidden_size_per_head: int | None = 128  # None: hidden_size // num_attention_heads (must divide)
    attention_window_size: int = 2048
    full_attention_idx: tuple[int, ...] = ()
    rope_theta: float = 10_000.0
    mamba_num_heads: int = 32
    mamba_d_state: int = 64
    mamba_d_conv: int = 4
    mamba_chunk_size: int = 256
    mamba_step: int = 2
    rms_norm_eps: float = 1e-6
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int | None = None
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    z_loss: bool = False  # PaLM's auxiliary loss on log Z, as PLaMo-100B used for stability
    z_loss_coef: float = 1e-4
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # unknown keys of a loaded file

    def __post_init__(self) -> None:
        full = () if self.full_attention_idx is None else self.full_attention_idx  # Hugging Face allows null
        object.__setattr__(self, "full_attention_idx", tuple(int(i) for i in full))
        if self.hidden_size_per_head is None and self.num_attention_heads > 0:
            if self.hidden_size % self.num_attention_heads:
                raise PlamoConfigError(
                    f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                    f"{self.num_attention_heads}; set hidden_size_per_head explicitly or change the sizes"
                )
            object.__setattr__(self, "hidden_size_per_head", self.hidden_size // self.num_attention_heads)
        self.validate()

    @property
    def head_dim(self) -> int:
        assert self.hidden_size_per_head is not None
        return self.hidden_size_per_head

    @property
    def mamba_intermediate_size(self) -> int:
        """Width of the Mamba mixer: one `hidden_size_per_head` slice per Mamba head."""
        return self.mamba_num_heads * self.head_dim

    @property
    def mamba_dt_dim(self) -> int:
        return max(64, self.hidden_size // 16)

    def layer_kind(self, index: int) -> LayerKind:
        if index % self.mamba_step != self.mamba_step // 2:
            return "mamba"
        return "full_attention" if index in self.full_attention_idx else "attention"

    @property
    def layer_kinds(self) -> tuple[LayerKind, ...]:
        return tuple(self.layer_kind(i) for i in range(self.num_hidden_layers))

    def attention_window(self, index: int) -> int | None:
        """Keys a query may see in attention layer `index`, itself included; None means the whole document."""
        return None if self.layer_kind(index) == "full_attention" else self.attention_window_size

    @property
    def layer_pattern(self) -> str:
        return " ".join(LAYER_SYMBOLS[kind] for kind in self.layer_kinds)

    def validate(self) -> None:
        positive = [
            "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "num_attention_heads",
            "num_key_value_heads", "hidden_size_per_head", "attention_window_size", "mamba_num_heads",
            "mamba_d_state", "mamba_d_conv", "mamba_chunk_size", "mamba_step",
        ]  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlamoConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise PlamoConfigError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by num_key_value_heads "
                f"{self.num_key_value_heads} (each key/value head serves a whole group of query heads)"
            )
        if self.head_dim % 2:
            raise PlamoConfigError(f"hidden_size_per_head must be even for rotary embeddings, got {self.head_dim}")
        for index in self.full_attention_idx:
            if not 0 <= index < self.num_hidden_layers:
                raise PlamoConfigError(
                    f"full_attention_idx has {index}, outside the {self.num_hidden_layers} layers"
                )
            if index % self.mamba_step != self.mamba_step // 2:
                attention_layers = [i for i in range(self.num_hidden_layers) if self.layer_kind(i) != "mamba"]
                raise PlamoConfigError(
                    f"full_attention_idx has {index}, a Mamba layer; attention layers are {attention_layers}"
                )
        if not self.rms_norm_eps > 0:
            raise PlamoConfigError(f"rms_norm_eps must be positive, got {self.rms_norm_eps}")
        if not self.rope_theta > 0:
            raise PlamoConfigError(f"rope_theta must be positive, got {self.rope_theta}")
        if self.z_loss_coef < 0:
            raise PlamoConfigError(f"z_loss_coef must be >= 0, got {self.z_loss_coef}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise PlamoConfigError(f"{name} {value} is outside the vocabulary of {self.vocab_size}")

    def replace(self, **overrides: Any) -> PlamoConfig:
        """A copy with some fields changed; unknown field names are errors that list the valid ones."""
        check_keys(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The config.json content: Hugging Face bookkeeping keys, every field, and kept unknown keys."""
        data: dict[str, Any] = {"architectures": ["Plamo2ForCausalLM"], "model_type": "plamo2", **self.extra}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                value = getattr(self, f.name)
                data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = True) -> PlamoConfig:
        """Build from a dict. `strict=False` (for config.json files) keeps unknown keys in `extra` with a warning."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = {k: v for k, v in data.items() if k not in known and k not in HF_BOOKKEEPING_KEYS}
        if unknown and strict:
            check_keys(unknown)
        if unknown:
            warnings.warn(f"PLaMo config: ignoring keys this implementation does not use: {sorted(unknown)}")
        fields = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**fields, extra=unknown)
        except TypeError as error:  # e.g. a list where a number belongs
            raise PlamoConfigError(f"bad PLaMo config: {error}") from None


def check_keys(keys: dict[str, Any]) -> None:
    valid = sorted(f.name for f in dataclasses.fields(PlamoConfig) if f.name != "extra")
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise PlamoConfigError(f"unknown PLaMo config key {key!r}.{hint} Valid keys: {', '.join(valid)}")

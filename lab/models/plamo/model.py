"""PLaMo 2: a decoder of Mamba and sliding-window attention layers with sandwich norms, in plain PyTorch.

Naming: module and parameter names are those of the public pfnet/plamo-2-1b checkpoint, so `state_dict()` is its
Hugging Face layout: `model.embed_tokens.weight`, `model.norm.weight`, and per layer `model.layers.layers.{i}.`
+ `pre_mixer_norm`, `post_mixer_norm`, `pre_mlp_norm`, `post_mlp_norm` (`.weight` = w of the scale offset + w),
`mlp.gate_up_proj` (gate rows first), `mlp.down_proj`; Mamba layers `mixer.in_proj` (per head: z then x),
`mixer.conv1d` (channels, 1, d_conv), `mixer.bcdt_proj` (B, C, dt rows), `mixer.dt_proj`, `mixer.dt_bias`,
`mixer.A_log`, `mixer.D`, `mixer.{dt,B,C}_norm_weight`, `mixer.out_proj`; attention layers `mixer.qkv_proj`
(q, k, v rows), `mixer.o_proj`, `mixer.q_weight`, `mixer.k_weight` (plain multipliers, initialised to 1). With
tied embeddings there is no `lm_head` module: logits use `model.embed_tokens.weight`, stored once. The names and
shapes were taken from public descriptions of that checkpoint; no real checkpoint file was loaded to confirm them.

Packed sequences: `document_ids` (b, T) gives each token a document number; wherever it changes a new document
starts. Positions restart at 0, the Mamba state and conv window reset, and attention does not cross the boundary,
so a packed row computes exactly what its documents would compute alone.

There is no maximum sequence length: RoPE angles are computed from positions on the fly, sliding-window layers
keep at most `attention_window_size` cached keys, and the scan pads to whole chunks internally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lab.models.plamo import flops
from lab.models.plamo.attention import Attention, AttentionState
from lab.models.plamo.config import PlamoConfig
from lab.models.plamo.mamba import Mamba, MambaState
from lab.models.plamo.norm import RMSNorm

IGNORE_INDEX = -100
NO_WEIGHT_DECAY_SUFFIXES = ("norm.weight", "norm_weight", "q_weight", "k_weight", "A_log", ".D", "dt_bias")


class TokenLayout(NamedTuple):
    """Where each token sits: its position in its document, its document, and whether it starts one."""

    positions: torch.Tensor  # (b, T)
    documents: torch.Tensor | None  # (b, T); None: every row is one document
    reset: torch.Tensor | None  # (b, T) bool; None: no document starts inside the rows


@dataclass
class PlamoCache:
    """Per-layer generation state, and where the next token goes (every row continues its last document)."""

    layers: list[MambaState | AttentionState]
    next_positions: torch.Tensor  # (b,)
    documents: torch.Tensor  # (b,)


class PlamoOutput(NamedTuple):
    logits: torch.Tensor
    loss: torch.Tensor | None = None  # cross-entropy, plus z-loss when enabled
    z_loss: torch.Tensor | None = None
    cache: PlamoCache | None = None


@torch.compiler.disable  # cummax, like cumsum, is a scan that Inductor has failed to compile on GPUs; this is cheap
def token_layout(input_ids: torch.Tensor, document_ids: torch.Tensor | None, cache: PlamoCache | None) -> TokenLayout:
    b, T = input_ids.shape
    index = torch.arange(T, device=input_ids.device).expand(b, T)
    if cache is not None:
        return TokenLayout(cache.next_positions[:, None] + index, cache.documents[:, None].expand(b, T), None)
    if document_ids is None:
        return TokenLayout(index, None, None)
    reset = F.pad(document_ids[:, 1:] != document_ids[:, :-1], (1, 0))
    start = torch.where(reset, index, 0).cummax(dim=1).values
    return TokenLayout(index - start, document_ids, reset)


class MLP(nn.Module):
    """SwiGLU with the gate and up projections fused into one matmul."""

    def __init__(self, config: PlamoConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: PlamoConfig, index: int) -> None:
        super().__init__()
        self.kind = config.layer_kind(index)
        eps = config.rms_norm_eps
        self.mixer = Mamba(config) if self.kind == "mamba" else Attention(config, config.attention_window(index))
        self.mlp = MLP(config)
        self.pre_mixer_norm = RMSNorm(config.hidden_size, eps, offset=1.0)
        self.post_mixer_norm = RMSNorm(config.hidden_size, eps, offset=1.0 / 5)
        self.pre_mlp_norm = RMSNorm(config.hidden_size, eps, offset=1.0)
        self.post_mlp_norm = RMSNorm(config.hidden_size, eps, offset=1.0 / 5**1.5)

    def forward(
        self, x: torch.Tensor, layout: TokenLayout, state: MambaState | AttentionState | None
    ) -> tuple[torch.Tensor, MambaState | AttentionState]:
        h = self.pre_mixer_norm(x)
        if isinstance(self.mixer, Mamba):
            h, state = self.mixer(h, layout.reset, state)
        else:
            h, state = self.mixer(h, layout.positions, layout.documents, state)
        x = x + self.post_mixer_norm(h)
        return x + self.post_mlp_norm(self.mlp(self.pre_mlp_norm(x))), state


class PlamoDecoder(nn.Module):
    """Holds the layers; exists so parameter names read `model.layers.layers.{i}` as in the public checkpoint."""

    def __init__(self, config: PlamoConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))


class PlamoModel(nn.Module):
    def __init__(self, config: PlamoConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = PlamoDecoder(config)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=1.0)

    def forward(
        self, input_ids: torch.Tensor, layout: TokenLayout, states: list | None
    ) -> tuple[torch.Tensor, list[MambaState | AttentionState]]:
        x = self.embed_tokens(input_ids)
        new_states = []
        for i, layer in enumerate(self.layers.layers):
            x, state = layer(x, layout, None if states is None else states[i])
            new_states.append(state)
        return self.norm(x), new_states


class PlamoForCausalLM(nn.Module):
    def __init__(self, config: PlamoConfig) -> None:
        super().__init__()
        self.config = config
        self.model = PlamoModel(config)
        self.lm_head = (
            None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    @property
    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        document_ids: torch.Tensor | None = None,
        cache: PlamoCache | None = None,
        use_cache: bool = False,
        last_logits_only: bool = False,
    ) -> PlamoOutput:
        """Logits for input_ids (b, T); with targets (b, T, already shifted; -100 ignored) also the loss.

        `use_cache=True` returns a cache to continue from; passing `cache` continues those rows (their last
        document) with the new tokens.
        """
        self._check_inputs(input_ids, targets, document_ids, cache)
        layout = token_layout(input_ids, document_ids, cache)
        hidden, states = self.model(input_ids, layout, None if cache is None else cache.layers)
        if last_logits_only:
            hidden = hidden[:, -1:]
        logits = F.linear(hidden, self.output_weight)
        new_cache = None
        if use_cache or cache is not None:
            last = layout.positions[:, -1]
            documents = torch.zeros_like(last) if layout.documents is None else layout.documents[:, -1]
            new_cache = PlamoCache(states, last + 1, documents)
        if targets is None:
            return PlamoOutput(logits, cache=new_cache)
        loss, z_loss = causal_lm_loss(logits, targets, self.config.z_loss_coef if self.config.z_loss else 0.0)
        return PlamoOutput(logits, loss, z_loss, new_cache)

    def _check_inputs(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None,
        document_ids: torch.Tensor | None,
        cache: PlamoCache | None,
    ) -> None:
        if input_ids.dim() != 2 or input_ids.shape[1] == 0 or input_ids.is_floating_point():
            raise ValueError(
                f"input_ids must be integer (batch, seq_len) with seq_len >= 1, got {input_ids.dtype} "
                f"{tuple(input_ids.shape)}"
            )
        for name, other in (("targets", targets), ("document_ids", document_ids)):
            if other is not None and other.shape != input_ids.shape:
                raise ValueError(f"{name} shape {tuple(other.shape)} != input_ids shape {tuple(input_ids.shape)}")
        if cache is not None and document_ids is not None:
            raise ValueError("document_ids cannot be combined with a cache: cached rows continue their last document")
        if cache is not None and cache.next_positions.shape[0] != input_ids.shape[0]:
            raise ValueError(f"cache holds {cache.next_positions.shape[0]} rows, input_ids has {input_ids.shape[0]}")
        if input_ids.device.type == "cpu" and not torch.compiler.is_compiling():  # a GPU check would sync each step
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.config.vocab_size:
                raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got [{low}, {high}]")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token at this sequence length; see `flops.flops_per_token`."""
        return flops.flops_per_token(self.config, seq_len, self.num_parameters())

    def estimate_mfu(self, tokens_per_second: float, peak_flops: float, *, seq_len: int) -> float:
        """Model FLOPs utilisation: achieved training FLOP/s over a peak that was measured or given."""
        return flops.estimate_mfu(self.flops_per_token(seq_len), tokens_per_second, peak_flops)

    def set_compile_scan(self, enabled: bool) -> None:
        """Whether torch.compile traces into the SSM scan (default True; False keeps it eager, see scan.py)."""
        for module in self.modules():
            if isinstance(module, Mamba):
                module.compile_scan = enabled

    def optimizer_param_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on matrices only: never on norms, QK-norm weights, A_log, D or dt_bias."""
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            (no_decay if name.endswith(NO_WEIGHT_DECAY_SUFFIXES) else decay).append(parameter)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def causal_lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, z_loss_coef: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean cross-entropy over targets != -100, plus z_loss_coef * mean(logsumexp(logits)^2) when coef > 0."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE_INDEX)
    if z_loss_coef <= 0:
        return loss, None
    valid = (flat_targets != IGNORE_INDEX).to(logits.dtype)
    log_z = torch.logsumexp(flat_logits, dim=-1)
    z_loss = z_loss_coef * (log_z.pow(2) * valid).sum() / valid.sum().clamp(min=1)
    return loss + z_loss, z_loss

"""Weight-only quantization of a trained small PLaMo: size, forward and generation speed, held-out bits/char.

    python benchmarks/bench_quantize.py                              # train a small PLaMo here, then measure
    python benchmarks/bench_quantize.py --checkpoint runs/.../model  # an HF-layout folder with its tokenizer
    python benchmarks/bench_quantize.py --steps 600 --eval-docs 500

Without --checkpoint a tokenizer (2k vocab) and a PLaMo (d 128, 4 layers, 1.3 M parameters) are trained on
synthetic Japanese from the four synth_render.text families mixed with the training side of manpages-ja, via
lab.lm_train (80 steps of 8 x 128 tokens: about 5 CPU-minutes on 2 cores, all rows included). Held-out
bits/char is lab.lm_train.evaluate_text on the first --eval-docs held-out manpages-ja documents (never seen by
the tokenizer or the model). Rows: float32, bf16 weights, int8 (per channel and g128), int4 (g32, g64, g128).
Size counts every stored tensor (packed weights + float32 scales + the float rest: embeddings, norms, dt_proj).
Forward tokens/s runs whole batches without gradients; generation is greedy with the cache (prefill included);
both keep the fastest of --repeats runs, the one least disturbed by other processes.
QuantizedLinear dequantizes its matrix on every call, so quantized rows trade speed for memory on this path.
Prints a table and writes benchmarks/results/quantize_<hardware>_py<version>_torch<version>.csv.
"""

from __future__ import annotations

import argparse
import copy
import csv
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lab.data.text import RealTextConfig, Tokenizer, TokenizerConfig, text_split  # noqa: E402
from lab.lm_train import LMTrainConfig, TokenStream, evaluate_text, train_lm  # noqa: E402
from lab.models.plamo import PlamoConfig, PlamoForCausalLM, generate  # noqa: E402
from lab.post.quantize import load_model, model_size_bytes, quantize_model  # noqa: E402
from lab.rundir import RunDir  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402
from synth_render.text import TEXT_GENERATORS, create_text_generator, text_config  # noqa: E402

VARIANTS = [("float32", None, None), ("bf16", None, None), ("int8", 8, None), ("int8", 8, 128),
            ("int4", 4, 32), ("int4", 4, 64), ("int4", 4, 128)]  # fmt: skip
FIELDS = ["variant", "bits", "group_size", "size_mb", "forward_tokens_per_s", "generate_tokens_per_s",
          "bits_per_char", "delta_bits_per_char", "eval_chars", "threads", "model", "detail"]  # fmt: skip


def small_config(vocab_size: int) -> PlamoConfig:
    return PlamoConfig(hidden_size=128, num_hidden_layers=4, intermediate_size=512, vocab_size=vocab_size,
                       num_attention_heads=4, num_key_value_heads=1, hidden_size_per_head=32,
                       attention_window_size=256, mamba_num_heads=4, mamba_d_state=32, mamba_chunk_size=64)


def train_small(args: argparse.Namespace, train_docs: list[str], workdir: Path) -> tuple[PlamoForCausalLM, Tokenizer]:
    """A tokenizer and a small PLaMo trained on synthetic documents mixed with real training documents."""
    synthetic = []
    for name in TEXT_GENERATORS.names():
        generator = create_text_generator(text_config(name))
        synthetic += [generator.document(i) for i in range(args.synthetic_docs)]
    real = train_docs[: args.real_docs]
    tokenizer = Tokenizer.train(synthetic + real, TokenizerConfig(vocab_size=args.vocab_size, num_threads=1))
    torch.manual_seed(args.seed)
    model = PlamoForCausalLM(small_config(tokenizer.vocab_size))
    stream = TokenStream.pack(tokenizer.encode_batch(synthetic + real), eos=model.config.eos_token_id)
    config = LMTrainConfig(steps=args.steps, batch_size=8, seq_len=128, lr=3e-3, checkpoint_every=10**9,
                           log_every=50)
    stats = train_lm(model, stream, config, RunDir(workdir / "train"), seed=args.seed, progress=False)
    print(f"trained {model.num_parameters():,} parameters on {len(stream):,} tokens "
          f"({len(synthetic)} synthetic + {len(real)} real documents) in {stats['train_seconds']:.0f} s")
    return model.eval(), tokenizer


def best_seconds(work, repeats: int) -> float:
    """The fastest of `repeats` timed calls: the least disturbed by other processes on a shared machine."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


@torch.no_grad()
def forward_speed(model: PlamoForCausalLM, vocab: int, batch: int, seq_len: int, repeats: int) -> float:
    ids = torch.randint(3, vocab, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    model(ids[:1, :16])  # warm-up
    return batch * seq_len / best_seconds(lambda: model(ids), repeats)


def generation_speed(model: PlamoForCausalLM, vocab: int, batch: int, prompt_len: int, new_tokens: int,
                     repeats: int) -> float:
    prompts = torch.randint(3, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1)).tolist()
    generate(model, prompts[:1], max_new_tokens=2, temperature=0)  # warm-up
    seconds = best_seconds(lambda: generate(model, prompts, max_new_tokens=new_tokens, temperature=0,
                                            eos_token_id=None), repeats)
    return batch * new_tokens / seconds


def build_variant(model: PlamoForCausalLM, name: str, bits: int | None, group_size: int | None) -> PlamoForCausalLM:
    if name == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16)
    if bits is None:
        return model
    return quantize_model(copy.deepcopy(model), bits=bits, group_size=group_size)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="an HF-layout float PLaMo folder holding its tokenizer (skips training)")
    parser.add_argument("--steps", type=int, default=80, help="training steps when no checkpoint is given")
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--synthetic-docs", type=int, default=200, help="documents per synthetic family")
    parser.add_argument("--real-docs", type=int, default=2000, help="real training documents mixed in")
    parser.add_argument("--eval-docs", type=int, default=150, help="held-out manpages-ja documents scored")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per speed figure (the best is kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="CSV path (default benchmarks/results/quantize_<hardware>_...csv)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    split = text_split(RealTextConfig(test_size=2000))
    held_out = split.test[: args.eval_docs]
    with tempfile.TemporaryDirectory() as workdir:
        if args.checkpoint:
            model, tokenizer = load_model(args.checkpoint).eval(), Tokenizer.load(args.checkpoint)
            label = Path(args.checkpoint).name
        else:
            model, tokenizer = train_small(args, split.train, Path(workdir))
            label = f"d128-L4 trained {args.steps} steps"
    vocab = model.config.vocab_size
    rows, reference = [], None
    for name, bits, group_size in VARIANTS:
        variant = build_variant(model, name, bits, group_size)
        evaluation = evaluate_text(variant, tokenizer, held_out, max_len=256, batch_size=32)
        bpc = evaluation["bits_per_char"]
        reference = bpc if reference is None else reference
        rows.append({
            "variant": name if group_size is None else f"{name}-g{group_size}", "bits": bits or "",
            "group_size": group_size or ("channel" if bits else ""),
            "size_mb": round(model_size_bytes(variant) / 2**20, 3),
            "forward_tokens_per_s": round(forward_speed(variant, vocab, 4, 256, args.repeats)),
            "generate_tokens_per_s": round(generation_speed(variant, vocab, 4, 16, 16, args.repeats), 1),
            "bits_per_char": round(bpc, 4), "delta_bits_per_char": round(bpc - reference, 4) + 0.0,
            "eval_chars": int(evaluation["eval_chars"]), "threads": args.threads, "model": label,
            "detail": "held-out manpages-ja; forward b4 T256; generate b4 prompt 16 + 16 greedy, cached; "
                      "best of repeats",
        })
        print(f"{rows[-1]['variant']:>12}  {rows[-1]['size_mb']:7.3f} MB  fwd {rows[-1]['forward_tokens_per_s']:>7} "
              f"tok/s  gen {rows[-1]['generate_tokens_per_s']:>5} tok/s  {bpc:.4f} bits/char "
              f"({bpc - reference:+.4f})", flush=True)
    torch_version = torch.__version__.split("+")[0]
    out = Path(args.out) if args.out else RESULTS / (
        f"quantize_{slug(cpu_name())}_py{platform.python_version()}_torch{torch_version}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Weight-only quantization of a trained small PLaMo: size, speed, held-out bits/char and pfgen-style score.

    python benchmarks/bench_quantize.py                              # train a small PLaMo here, then measure
    python benchmarks/bench_quantize.py --checkpoint runs/.../model  # an HF-layout folder with its tokenizer
    python benchmarks/bench_quantize.py --steps 600 --eval-docs 500

Without --checkpoint a tokenizer (2k vocab) and a PLaMo (d 128, 4 layers, 1.3 M parameters) are trained on
synthetic Japanese from the four synth_render.text families mixed with the training side of manpages-ja, via
lab.lm_train (80 steps of 8 x 128 tokens; all rows with the pfgen column: about 10 CPU-minutes on 2 cores). Held-out
bits/char is lab.lm_train.evaluate_text on the first --eval-docs held-out manpages-ja documents (never seen by
the tokenizer or the model). Rows: float32, bf16 weights, int8 (per channel and g128), int4 (g32, g64, g128).
Size counts every stored tensor (packed weights + float32 scales + the float rest: embeddings, norms, dt_proj).
Forward tokens/s runs whole batches without gradients; generation is greedy with the cache (prefill included);
both keep the fastest of --repeats runs, the one least disturbed by other processes. The pfgen-style score is
lab.post.measure.pfgen_score on a lab question set about the four synthetic families' world (--pfgen-questions
x --pfgen-trials, the same sampling seed for every variant); its delta to float32 is paired over questions,
with a standard error. The rows are lab.post.quant_table.quantization_table (`lab post quantize --report`).
QuantizedLinear dequantizes its matrix on every call, so quantized rows trade speed for memory on this path.
Prints a table and writes benchmarks/results/quantize_<hardware>_py<version>_torch<version>.csv.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lab.data.text import RealTextConfig, Tokenizer, TokenizerConfig, text_split  # noqa: E402
from lab.lm_train import LMTrainConfig, TokenStream, train_lm  # noqa: E402
from lab.models.plamo import PlamoConfig, PlamoForCausalLM  # noqa: E402
from lab.post.measure import build_question_set  # noqa: E402
from lab.post.quant_table import DEFAULT_VARIANTS, PfgenSetup, Variant, quantization_table  # noqa: E402
from lab.post.quantize import load_model  # noqa: E402
from lab.core.rundir import RunDir  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402
from synth_render.text import TEXT_GENERATORS, create_text_generator, text_config  # noqa: E402

FIELDS = ["variant", "bits", "group_size", "size_mb", "forward_tokens_per_s", "generate_tokens_per_s",
          "bits_per_char", "delta_bits_per_char", "pfgen_score", "delta_pfgen", "delta_pfgen_se", "eval_chars",
          "threads", "model", "detail"]  # fmt: skip


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
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated rows: float32, bf16, int8, int4, int8-g<N>, int4-g<N>")
    parser.add_argument("--pfgen-questions", type=int, default=24,
                        help="lab questions answered per variant (>= 21: 20-shot prompts; 0 skips the pfgen column)")
    parser.add_argument("--pfgen-trials", type=int, default=1)
    parser.add_argument("--pfgen-answers", type=int, default=50, help="reference answers per question")
    parser.add_argument("--pfgen-max-new-tokens", type=int, default=40)
    parser.add_argument("--pfgen-generators", default=",".join(TEXT_GENERATORS.names()),
                        help="synthetic families the question set is about (the model's training world)")
    parser.add_argument("--pfgen-world-seed", type=int, default=0, help="seed of those families' world")
    parser.add_argument("--out", help="CSV path (default benchmarks/results/quantize_<hardware>_...csv)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = [Variant.parse(v) for v in args.variants.split(",")]
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
        pfgen = None
        if args.pfgen_questions > 0:
            names = args.pfgen_generators.split(",")
            set_dir = build_question_set(names, Path(workdir) / "questions", seed=args.pfgen_world_seed,
                                         questions=max(21, args.pfgen_questions), answers=args.pfgen_answers)
            pfgen = PfgenSetup(set_dir, Path(workdir) / "pfgen", questions=args.pfgen_questions,
                               trials=args.pfgen_trials, max_new_tokens=args.pfgen_max_new_tokens)
        rows = quantization_table(model, tokenizer, variants, held_out, pfgen=pfgen, repeats=args.repeats)
    detail = "held-out manpages-ja; forward b4 T256; generate b4 prompt 16 + 16 greedy, cached; best of repeats"
    if pfgen is not None:
        detail += (f"; pfgen: {pfgen.questions} lab questions ({args.pfgen_generators}) x {pfgen.trials} trials, "
                   f"same sampling seed per variant, delta paired over questions")
    for row in rows:
        row.update(threads=args.threads, model=label, detail=detail)
        pfgen_text = (f"  pfgen {row['pfgen_score']:.4f} ({row['delta_pfgen']:+.4f} +- {row['delta_pfgen_se']:.4f})"
                      if pfgen is not None else "")
        print(f"{row['variant']:>12}  {row['size_mb']:7.3f} MB  fwd {row['forward_tokens_per_s']:>7} tok/s  "
              f"gen {row['generate_tokens_per_s']:>5} tok/s  {row['bits_per_char']:.4f} bits/char "
              f"({row['delta_bits_per_char']:+.4f}){pfgen_text}", flush=True)
    torch_version = torch.__version__.split("+")[0]
    out = Path(args.out) if args.out else RESULTS / (
        f"quantize_{slug(cpu_name())}_py{platform.python_version()}_torch{torch_version}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic Japanese text throughput per generator family, and tokenizer training time on real text.

    python benchmarks/bench_text.py                       # manpages-ja, 8k vocab, ~3 s per family
    python benchmarks/bench_text.py --seconds 1 --vocab-size 4000 --corpus hironsan

Generation runs in this one process (one core); tokens/s counts tokens of the trained tokenizer per second of
generation, encode/s is the tokenizer alone. The shard row renders one family to verified shards with
token counts (generation + tokenization + hashing). Writes a CSV named by hardware and versions.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import RESULTS, cpu_name, slug  # noqa: E402

from lab.data.text import RealTextConfig, Tokenizer, TokenizerConfig, load_corpus, text_split  # noqa: E402
from synth_render.text import TEXT_GENERATORS, create_text_generator, render_text, text_config  # noqa: E402


def time_family(name: str, tokenizer: Tokenizer, seconds: float) -> dict[str, float]:
    generator = create_text_generator(text_config(name))
    generator.document(0)  # build the world outside the timing
    docs, started = [], time.perf_counter()
    while time.perf_counter() - started < seconds:
        docs.append(generator.document(len(docs) + 1))
    elapsed = time.perf_counter() - started
    encode_started = time.perf_counter()
    tokens = tokenizer.count_tokens(docs)
    encode_elapsed = time.perf_counter() - encode_started
    chars = sum(len(d) for d in docs)
    return {"docs_per_s": len(docs) / elapsed, "chars_per_s": chars / elapsed, "tokens_per_s": tokens / elapsed,
            "chars_per_token": chars / tokens, "encode_tokens_per_s": tokens / encode_elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="manpages_ja")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=2, help="sentencepiece training threads")
    parser.add_argument("--seconds", type=float, default=3.0, help="generation time per family")
    parser.add_argument("--shard-docs", type=int, default=2000)
    args = parser.parse_args()

    started = time.perf_counter()
    size = len(load_corpus(RealTextConfig(name=args.corpus)))
    split = text_split(RealTextConfig(name=args.corpus, test_size=min(2000, size // 10)))
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    tokenizer = Tokenizer.train(split.train, TokenizerConfig(vocab_size=args.vocab_size, num_threads=args.threads))
    train_s = time.perf_counter() - started
    real_chars = sum(len(t) for t in split.train)
    print(f"corpus {args.corpus}: {len(split.train)} training documents, {real_chars} characters, loaded in {load_s:.1f} s")
    held_out = sum(len(t) for t in split.test) / tokenizer.count_tokens(split.test)
    print(f"tokenizer: unigram {tokenizer.vocab_size} pieces trained in {train_s:.1f} s ({args.threads} threads); "
          f"{held_out:.2f} characters per token on the held-out text")

    rows = []
    for name in TEXT_GENERATORS:
        result = time_family(name, tokenizer, args.seconds)
        rows.append((name, result))
    with tempfile.TemporaryDirectory(prefix="bench_text_") as root:
        started = time.perf_counter()
        render_text(text_config("world_facts"), Path(root) / "shards", args.shard_docs, tokenizer=tokenizer)
        shard_s = time.perf_counter() - started
    print(f"\n{'family':<14}{'docs/s':>10}{'chars/s':>12}{'tokens/s':>12}{'chars/tok':>11}{'encode tok/s':>14}")
    for name, r in rows:
        print(f"{name:<14}{r['docs_per_s']:>10.0f}{r['chars_per_s']:>12.0f}{r['tokens_per_s']:>12.0f}"
              f"{r['chars_per_token']:>11.2f}{r['encode_tokens_per_s']:>14.0f}")
    print(f"render world_facts to shards with token counts: {args.shard_docs / shard_s:.0f} docs/s")

    import sentencepiece

    out = RESULTS / f"text_{slug(cpu_name())}_{os.cpu_count()}cpu_sentencepiece{sentencepiece.__version__}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["what", "docs_per_s", "chars_per_s", "tokens_per_s", "chars_per_token", "encode_tokens_per_s",
                         "seconds", "settings"])
        for name, r in rows:
            writer.writerow([f"generate {name}", *(f"{r[k]:.1f}" for k in ("docs_per_s", "chars_per_s", "tokens_per_s")),
                             f"{r['chars_per_token']:.3f}", f"{r['encode_tokens_per_s']:.0f}", args.seconds,
                             f"vocab={tokenizer.vocab_size}"])
        writer.writerow(["render world_facts shards", f"{args.shard_docs / shard_s:.1f}", "", "", "", "", f"{shard_s:.2f}",
                         f"docs={args.shard_docs}"])
        writer.writerow([f"train tokenizer on {args.corpus}", "", "", "", "", "", f"{train_s:.2f}",
                         f"vocab={args.vocab_size} threads={args.threads} docs={len(split.train)} chars={real_chars}"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""PLaMo 2 throughput: training and cached generation tokens/s, and MFU against a measured matmul peak.

    python benchmarks/bench_plamo.py                            # CPU: plamo-2-7m, T 256, batch 4
    python benchmarks/bench_plamo.py --device cuda              # GPU: plamo-2-240m, T 2048, bf16 autocast
    python benchmarks/bench_plamo.py --device cuda --compile    # torch.compile the training step
    python benchmarks/bench_plamo.py --device cuda --compile --eager-scan --set mamba_chunk_size=128

Training rows time steps of the lab's one training loop (`lab.train.engine.run_steps`: forward, loss check,
backward, clipping, AdamW) on random tokens, once as whole rows and once packed as four documents per row
(document masks: attention leaves SDPA's causal fast path). Generation is greedy with the cache (prompt prefill
included). MFU uses the model's own FLOPs per token and a peak measured here (a large bf16 matmul on a GPU,
float32 on the CPU) unless --peak-tflops gives one. Prints a table and writes
benchmarks/results/plamo_<hardware>_py<version>_torch<version>.csv.
"""

from __future__ import annotations

import argparse
import ast
import csv
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.models.plamo import PlamoForCausalLM, create_plamo  # noqa: E402
from lab.models.plamo.flops import measure_peak_flops  # noqa: E402
from lab.models.plamo.generate import generate  # noqa: E402
from lab.train.engine import Hooks, run_steps  # noqa: E402
from machine import RESULTS, cpu_name, slug  # noqa: E402

DEFAULTS = {
    "cpu": {"model": "plamo-2-7m", "seq_len": 256, "batch_size": 4, "steps": 5, "warmup": 2,
            "gen_batch": 4, "prompt_len": 32, "new_tokens": 32},
    "cuda": {"model": "plamo-2-240m", "seq_len": 2048, "batch_size": 8, "steps": 20, "warmup": 5,
             "gen_batch": 16, "prompt_len": 512, "new_tokens": 128},
}  # fmt: skip
FIELDS = ["benchmark", "model", "device", "dtype", "threads", "batch", "seq_len", "tokens_per_second", "mfu",
          "peak_tflops", "detail"]  # fmt: skip


def hardware_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def results_path(device: torch.device) -> Path:
    torch_version = torch.__version__.split("+")[0]
    return RESULTS / f"plamo_{slug(hardware_name(device))}_py{platform.python_version()}_torch{torch_version}.csv"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def packed_documents(batch: int, seq_len: int, device: torch.device, per_row: int = 4) -> torch.Tensor:
    return (torch.arange(seq_len, device=device) * per_row // seq_len).expand(batch, seq_len)


def time_training(
    model: PlamoForCausalLM, step_model, args: argparse.Namespace, device: torch.device, packed: bool
) -> float:
    """Median seconds per optimizer step of the lab's one loop (`lab.train.engine.run_steps`, as `lab.train.lm`
    calls it: AdamW betas (0.9, 0.95), clipping at 1, the loss checked every step), each step from the end of the
    one before to its own end, synchronized."""
    optimizer = torch.optim.AdamW(model.optimizer_param_groups(0.1), lr=1e-4, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    generator = torch.Generator(device=device).manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len + 1), device=device,
                        generator=generator)  # fmt: skip
    documents = packed_documents(args.batch_size, args.seq_len, device) if packed else None
    steps = args.warmup + args.steps
    ends = []

    def step_loss(step: int) -> torch.Tensor:
        return step_model(ids[:, :-1], ids[:, 1:], document_ids=documents).loss

    def after_step(step: int, lr: float, loss: float | None) -> None:
        synchronize(device)
        ends.append(time.perf_counter())

    synchronize(device)
    ends.append(time.perf_counter())
    run_steps(model, optimizer, step_loss, steps=steps, lr_at=lambda step: 1e-4, desc="bench", log_every=steps,
              grad_clip=1.0, autocast=lambda: autocast(device),  # clipping: LMTrainConfig's default
              hooks=Hooks(after_step=after_step))
    return statistics.median(b - a for a, b in zip(ends[args.warmup : -1], ends[args.warmup + 1 :]))


def time_generation(model: PlamoForCausalLM, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds for greedy cached generation of gen_batch x new_tokens tokens (best of two runs)."""
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, model.config.vocab_size, (args.gen_batch, args.prompt_len), generator=generator)
    best = float("inf")
    for _ in range(2):
        synchronize(device)
        start = time.perf_counter()
        with autocast(device):
            generate(model, prompts.tolist(), max_new_tokens=args.new_tokens, temperature=0, eos_token_id=None)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def parse_overrides(items: list[str]) -> dict[str, object]:
    """`key=value` config overrides; values are parsed as Python literals where possible (128, True, (3,))."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_plamo(args.model, device=device, **parse_overrides(args.set))
    model.set_compile_scan(not args.eager_scan)
    if args.peak_tflops:
        peak, peak_source = args.peak_tflops * 1e12, "given"
    elif device.type == "cuda":
        peak, peak_source = measure_peak_flops(device, torch.bfloat16, size=8192), "measured bf16 matmul 8192"
    else:
        peak, peak_source = measure_peak_flops(device, torch.float32, size=1024), "measured fp32 matmul 1024"
    step_model = torch.compile(model) if args.compile else model
    dtype = "bf16 autocast" if device.type == "cuda" else "fp32"
    common = {"model": args.model, "device": hardware_name(device), "dtype": dtype, "peak_tflops": peak / 1e12,
              "threads": torch.get_num_threads()}  # fmt: skip
    rows = []
    for packed in (False,) if args.no_packed else (False, True):
        seconds = time_training(model, step_model, args, device, packed)
        tokens_per_second = args.batch_size * args.seq_len / seconds
        rows.append({
            **common, "benchmark": "train" + (" (4 documents per row)" if packed else ""),
            "batch": args.batch_size, "seq_len": args.seq_len, "tokens_per_second": tokens_per_second,
            "mfu": model.estimate_mfu(tokens_per_second, peak, seq_len=args.seq_len),
            "detail": f"{seconds * 1e3:.1f} ms/step; compile={args.compile}; eager_scan={args.eager_scan}; "
            f"{' '.join(args.set) or 'registered config'}; peak {peak_source}; "
            f"{model.flops_per_token(args.seq_len) / 1e9:.3g} GFLOP/token",
        })  # fmt: skip
    if args.no_generate:
        return rows
    seconds = time_generation(model, args, device)
    rows.append({
        **common, "benchmark": "generate (greedy, cached)", "batch": args.gen_batch,
        "seq_len": args.prompt_len + args.new_tokens, "tokens_per_second": args.gen_batch * args.new_tokens / seconds,
        "mfu": "", "detail": f"prompt {args.prompt_len} + {args.new_tokens} new tokens in {seconds:.2f} s, eager",
    })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", help="a PLaMo config name (default: plamo-2-7m on cpu, plamo-2-240m on cuda)")
    for name in ("seq_len", "batch_size", "steps", "warmup", "gen_batch", "prompt_len", "new_tokens"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int)
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step, scan excluded")
    parser.add_argument("--eager-scan", action="store_true", help="with --compile, keep the SSM scan out of it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the PLaMo config (repeatable), e.g. mamba_chunk_size=128")
    parser.add_argument("--no-generate", action="store_true", help="time training only")
    parser.add_argument("--no-packed", action="store_true", help="skip the packed-documents training row")
    parser.add_argument("--out", type=Path, help="CSV path (default: benchmarks/results/plamo_<hardware>_....csv)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; on a machine "
                        "whose cores are busy with other work, 1 can be far faster)")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, help="use this peak instead of measuring one")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")

    rows = run(args)
    device = torch.device(args.device)
    print(f"# {hardware_name(device)} | python {platform.python_version()} | torch {torch.__version__} | "
          f"{torch.get_num_threads()} CPU threads")  # fmt: skip
    print(f"{'benchmark':<28}{'model':<14}{'batch':>6}{'T':>6}{'tokens/s':>12}{'MFU':>8}  detail")
    for row in rows:
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] != "" else "-"
        print(f"{row['benchmark']:<28}{row['model']:<14}{row['batch']:>6}{row['seq_len']:>6}"
              f"{row['tokens_per_second']:>12.1f}{mfu:>8}  {row['detail']}")  # fmt: skip
    out = args.out or results_path(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**row, "tokens_per_second": f"{row['tokens_per_second']:.1f}"} for row in rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

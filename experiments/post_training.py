"""Post-training recipe: base PLaMo -> SFT -> DPO (-> linear and task-arithmetic merges), each stage measured.

Stages are idempotent run directories (`<root>/<experiment>/<stage>/<hash>/`, result.json written last) keyed by
their config and their parents' hashes, and every model is saved in the Hugging Face layout with its tokenizer
(`<run>/model`). The base is a PLaMo pre-trained briefly on the synthetic corpus of the same world the
instructions ask about, or an existing checkpoint folder (`base_checkpoint`, which must hold its tokenizer).
The evaluation question set (a pfgen lab set) is built first and its questions are excluded from the SFT/DPO
data; the held-out split of the instruction data gives task accuracy. Writes `<root>/<experiment>/report/
{report.md, stages.json}`. Defaults run in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from lab.data.text import Tokenizer, TokenizerConfig
from lab.eval.pfgen.lab_sets import build_lab_set, make_generators, write_lab_set
from lab.lm_train import LMTrainConfig, TokenStream, resolve_device, train_lm
from lab.models.plamo import load_pretrained, save_pretrained
from lab.post.dpo import DPOConfig, frozen_copy, train_dpo
from lab.post.instruct_data import InstructData, InstructDataConfig
from lab.post.measure import pfgen_score, preference_metrics, task_accuracy
from lab.post.sft import SFTConfig, train_sft
from lab.post.stage_table import StageRow, write_stage_table
from lab.core.progress import StageBar
from lab.core.rundir import RunDir
from lab.core.provenance import provenance
from lab.stages.skeleton import run_stage
from lab.stages.text import MODEL_DIR, PlamoSpec

CONF_DIR = Path(__file__).resolve().parent / "conf"


@dataclass
class PostEvalConfig:
    """Held-out prompts for task accuracy and a small pfgen-style run (few questions, 1-2 trials)."""

    heldout_examples: int = 48  # greedy task accuracy
    heldout_pairs: int = 64  # likelihood metrics (response NLL, preference accuracy)
    max_new_tokens: int = 40
    set_questions: int = 24  # the lab question set (>= 21: the harness builds 20-shot prompts)
    set_answers: int = 100  # reference answers per question
    pfgen_questions: int = 8  # answered and scored
    pfgen_trials: int = 1
    pfgen_max_new_tokens: int = 48


@dataclass
class PostTrainingConfig:
    root: str = "runs"
    experiment: str = "post_training"
    seed: int = 0
    instruct: InstructDataConfig = field(default_factory=lambda: InstructDataConfig(text={"n_entities": 30}))
    base_checkpoint: str | None = None  # a save_pretrained folder holding its tokenizer; None: pre-train one
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(vocab_size=600,
                                                                               character_coverage=0.98))
    model: PlamoSpec = field(default_factory=PlamoSpec)
    pretrain_docs: int = 400  # per generator family
    pretrain: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(steps=250, batch_size=16, seq_len=64,
                                                                          lr=3e-3, checkpoint_every=100))
    sft_examples: int = 2000
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=150))
    dpo_pairs: int = 1000
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(steps=60))
    merge: bool = True
    merge_task_scale: float = 1.5  # task arithmetic: SFT + scale * (DPO - SFT)
    eval: PostEvalConfig = field(default_factory=PostEvalConfig)
    device: str = "cpu"
    threads: int = 1  # tiny models run fastest on one thread (and a shared CPU stays usable); 0: torch default

    def validate(self) -> None:
        self.instruct.validate()
        self.dpo.validate()
        if self.eval.set_questions < 21:
            raise ValueError(f"eval.set_questions must be >= 21 (20-shot prompts), got {self.eval.set_questions}")
        if not 1 <= self.eval.pfgen_questions <= self.eval.set_questions:
            raise ValueError(f"eval.pfgen_questions must be in [1, eval.set_questions], "
                             f"got {self.eval.pfgen_questions}")
        for key in ("pretrain_docs", "sft_examples", "dpo_pairs"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.base_checkpoint is not None:
            folder = Path(self.base_checkpoint)
            missing = [n for n in ("config.json", "tokenizer.model") if not (folder / n).is_file()]
            if missing:
                raise ValueError(f"base_checkpoint {folder} lacks {missing}: it must be a save_pretrained folder "
                                 "with its tokenizer")


def _run_dir(config: PostTrainingConfig, stage: str, identity: dict[str, Any]) -> RunDir:
    return RunDir.for_config(config.root, config.experiment, stage, identity)


def _save(model: Any, tokenizer: Tokenizer, run: RunDir) -> str:
    folder = save_pretrained(model, run.path / MODEL_DIR)
    tokenizer.save(folder)
    return str(folder)


def run_base(config: PostTrainingConfig, progress: bool = False) -> dict[str, Any]:
    """The given checkpoint, or a tokenizer + PLaMo pre-trained on synthetic documents of every family
    (`progress`: a step bar)."""
    if config.base_checkpoint is not None:
        return {"run_hash": "given", "weights": str(Path(config.base_checkpoint))}
    identity = {"instruct": config.instruct, "tokenizer": config.tokenizer, "model": config.model,
                "pretrain_docs": config.pretrain_docs, "pretrain": config.pretrain, "seed": config.seed}
    run = _run_dir(config, "base", identity)

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        run.write_config(identity)
        generators = make_generators(config.instruct.generators, config.instruct.seed, config.instruct.text)
        documents = [g.document(i) for i in range(config.pretrain_docs) for g in generators]
        tokenizer = Tokenizer.train(documents, config.tokenizer)
        torch.manual_seed(config.seed)
        model = config.model.build(tokenizer.vocab_size)
        stream = TokenStream.pack(tokenizer.encode_batch(documents), eos=model.config.eos_token_id)
        stats = train_lm(model, stream, config.pretrain, run, seed=config.seed, device=resolve_device(config.device),
                         desc="pretrain", progress=progress)
        return {"run_hash": run.hash, "weights": _save(model, tokenizer, run), "documents": len(documents),
                "tokens": len(stream), **stats, "wall_seconds": time.perf_counter() - started, **provenance()}

    return run_stage(run, lambda _context: work())


def build_eval_set(config: PostTrainingConfig) -> Path:
    """The pfgen lab question set of the instructions' world (deterministic, rebuilt in place when missing)."""
    identity = {"instruct": config.instruct, "questions": config.eval.set_questions,
                "answers": config.eval.set_answers}
    run = _run_dir(config, "eval_set", identity)
    folder = run.path / "questions"
    if not (folder / "questions.jsonl").is_file():
        generators = make_generators(config.instruct.generators, config.instruct.seed, config.instruct.text)
        built = build_lab_set(generators, config.eval.set_questions, config.instruct.seed, config.eval.set_answers)
        write_lab_set(built, folder, {"format": 1, "generators": config.instruct.generators,
                                      "seed": config.instruct.seed, "questions": config.eval.set_questions,
                                      "answers": config.eval.set_answers, "text": config.instruct.text})
    return folder


def instruct_data(config: PostTrainingConfig, eval_set: Path) -> InstructData:
    from lab.eval.pfgen.data import load_questions

    return InstructData(config.instruct, exclude=[q.question for q in load_questions(eval_set)])


def run_sft_stage(config: PostTrainingConfig, base: dict[str, Any], data: InstructData, progress: bool = False
                  ) -> dict[str, Any]:
    identity = {"base": base["run_hash"] if base["run_hash"] != "given" else base["weights"],
                "instruct": config.instruct, "examples": config.sft_examples, "sft": config.sft, "seed": config.seed,
                "exclude": sorted(data.exclude)}
    run = _run_dir(config, "sft", identity)

    def work() -> dict[str, Any]:
        run.write_config(identity)
        tokenizer = Tokenizer.load(base["weights"])
        model = load_pretrained(base["weights"])
        stats = train_sft(model, tokenizer, data.examples("train", config.sft_examples), config.sft, run,
                          seed=config.seed, device=resolve_device(config.device), progress=progress)
        return {"run_hash": run.hash, "weights": _save(model, tokenizer, run), **stats, **provenance()}

    return run_stage(run, lambda _context: work())


def run_dpo_stage(config: PostTrainingConfig, sft: dict[str, Any], data: InstructData, progress: bool = False
                  ) -> dict[str, Any]:
    identity = {"sft": sft["run_hash"], "pairs": config.dpo_pairs, "dpo": config.dpo, "seed": config.seed}
    run = _run_dir(config, "dpo", identity)

    def work() -> dict[str, Any]:
        run.write_config(identity)
        tokenizer = Tokenizer.load(sft["weights"])
        policy = load_pretrained(sft["weights"])
        reference = frozen_copy(policy)
        stats = train_dpo(policy, reference, tokenizer, data.pairs("train", config.dpo_pairs), config.dpo, run,
                          seed=config.seed, device=resolve_device(config.device), progress=progress)
        return {"run_hash": run.hash, "weights": _save(policy, tokenizer, run), **stats, **provenance()}

    return run_stage(run, lambda _context: work())


def run_merges(config: PostTrainingConfig, base: dict[str, Any], sft: dict[str, Any], dpo: dict[str, Any]
               ) -> dict[str, str]:
    """SFT/DPO averaged 0.5/0.5 and SFT + scale (DPO - SFT), saved with the tokenizer."""
    from lab.post.merge import merge_linear, merge_task_arithmetic

    identity = {"sft": sft["run_hash"], "dpo": dpo["run_hash"], "scale": config.merge_task_scale}
    run = _run_dir(config, "merge", identity)
    folders = {"merge linear (SFT+DPO)/2": run.path / "linear",
               f"merge task SFT+{config.merge_task_scale:g}(DPO-SFT)": run.path / "task"}
    linear, task = folders.values()
    tokenizer = Tokenizer.load(sft["weights"])
    if not (linear / "config.json").is_file():
        merge_linear([sft["weights"], dpo["weights"]], [0.5, 0.5], out=linear)
        tokenizer.save(linear)
    if not (task / "config.json").is_file():
        merge_task_arithmetic(sft["weights"], [dpo["weights"]], config.merge_task_scale, out=task)
        tokenizer.save(task)
    return {label: str(folder) for label, folder in folders.items()}


def measure_stage(config: PostTrainingConfig, label: str, weights: str, heldout: Sequence[Any],
                  heldout_pairs: Sequence[Any], eval_set: Path, key: str) -> StageRow:
    """Task accuracy, pfgen-style score and held-out likelihoods of one checkpoint (stored: a rerun only measures
    new stages)."""
    identity = {"weights": weights, "key": key, "eval": config.eval, "heldout": [e.question for e in heldout]}
    run = _run_dir(config, "measure", identity)

    def work() -> dict[str, Any]:
        run.write_config(identity)
        model, tokenizer = load_pretrained(weights), Tokenizer.load(weights)
        model.to(resolve_device(config.device))
        task = task_accuracy(model, tokenizer, heldout, max_new_tokens=config.eval.max_new_tokens)
        pfgen = pfgen_score(model, tokenizer, eval_set, run.path / "pfgen", questions=config.eval.pfgen_questions,
                            trials=config.eval.pfgen_trials, max_new_tokens=config.eval.pfgen_max_new_tokens,
                            cache_dir=Path(config.root) / "pfgen_cache")
        preference = preference_metrics(model, tokenizer, heldout_pairs, max_len=config.sft.max_len)
        return {"task": task, "pfgen": pfgen, "preference": preference}

    result = run_stage(run, lambda _context: work())
    return StageRow.from_measures(label, weights, result["task"], result["pfgen"], result["preference"])


def run_post_training(config: PostTrainingConfig, progress: bool = False) -> dict[str, Any]:
    """All stages, the table across them, and where it was written. `progress`: a bar over the named stages on
    stderr, with a step bar for each training (a stage already done passes at once)."""
    config.validate()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    measured = 3 + 2 * config.merge  # base, SFT, DPO and the two merges
    with StageBar("post pipeline", 4 + config.merge + measured, progress) as bar:
        with bar.stage("question set and instruction data"):
            eval_set = build_eval_set(config)
            data = instruct_data(config, eval_set)
            heldout = data.examples("heldout", config.eval.heldout_examples)
            heldout_pairs = data.pairs("heldout", config.eval.heldout_pairs)
        with bar.stage("base" if config.base_checkpoint is not None else "pre-train the base"):
            base = run_base(config, progress)
        with bar.stage("SFT"):
            sft = run_sft_stage(config, base, data, progress)
        with bar.stage("DPO"):
            dpo = run_dpo_stage(config, sft, data, progress)
        stages = {"base": (base["weights"], base["run_hash"]), "SFT": (sft["weights"], sft["run_hash"]),
                  "DPO": (dpo["weights"], dpo["run_hash"])}
        if config.merge:
            with bar.stage("merges"):
                for label, folder in run_merges(config, base, sft, dpo).items():
                    stages[label] = (folder, f"{dpo['run_hash']}:{label}")
        rows = []
        for label, (weights, key) in stages.items():
            with bar.stage(f"measure {label}"):
                rows.append(measure_stage(config, label, weights, heldout, heldout_pairs, eval_set, key))
    notes = [f"Task accuracy: greedy answers to {len(heldout)} held-out instruction prompts (questions disjoint from "
             f"training and from the evaluation set), correct when every required keyword rule matches.",
             f"resp NLL / pref acc: on {len(heldout_pairs)} held-out preference pairs, the chosen response's loss "
             f"(nats per token) and the share where it is more likely than the rejected (corrupted) one.",
             f"pfgen: the first {config.eval.pfgen_questions} of {config.eval.set_questions} lab-set questions "
             f"({', '.join(config.instruct.generators)}), {config.eval.pfgen_trials} trial(s), 20-shot completion "
             f"prompts, temperature 1.0, top-p 0.98, at most {config.eval.pfgen_max_new_tokens} new tokens.",
             f"Model {config.model.name}; SFT {config.sft.steps} steps on {config.sft_examples} examples; DPO "
             f"{config.dpo.steps} steps on {config.dpo_pairs} pairs, beta {config.dpo.beta}. "
             f"Total wall time {time.perf_counter() - started:.0f} s."]
    out = Path(config.root) / config.experiment / "report"
    markdown, table = write_stage_table(rows, out, title="Post-training stages (toy scale)", notes=notes)
    return {"rows": [asdict(r) for r in rows], "report": markdown.read_text(), "markdown": str(markdown),
            "json": str(table), "stages": {"base": base, "sft": sft, "dpo": dpo}}


def load_post_training_config(overrides: Sequence[str] = ()) -> PostTrainingConfig:
    from lab.core.config import load_config

    return load_config(CONF_DIR, "post_training", PostTrainingConfig, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """`lab post pipeline` (also `python -m experiments.post_training`, with the same --help and --show-config)."""
    from experiments.post_cli import action_parser
    from lab.core.config import ConfigError, to_yaml

    args = action_parser("pipeline", "python -m experiments.post_training").parse_args(
        sys.argv[1:] if argv is None else argv)
    try:
        config = load_post_training_config(args.overrides)
        if args.show_config:
            print(to_yaml(config), end="")
            return 0
        outcome = run_post_training(config, progress=True)
    except (ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(outcome["report"])
    print(f"wrote {outcome['markdown']} and {outcome['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

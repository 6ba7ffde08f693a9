"""`lab paper collect|figures|build`: from finished sweeps to the paper's figures, tables and PDF.

    collect   the tidy results of each paper study (experiments/conf/experiment/paper_*.yaml) from <root>/<name>/
              into paper/results/<study>.csv, and the records of its finished run directories (result.json,
              config.yaml, attempts.jsonl; no weights) into paper/results/runs/<name>.jsonl
    restore   those records back into <root>/<name>/: a relaunch of the study on a fresh machine then counts
              the stored points as done and runs only what is missing
    figures   execute one notebook per figure (notebooks/paper_*.ipynb) on those tables; they write
              paper/generated/{figures,tables,findings}/ and this command adds findings.md / findings.tex
    pdf       pdflatex paper/main.tex on what `figures` wrote (where a TeX engine is installed)

The notebooks read only the collected tables, so the figures of a Slurm-scale run are made the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "paper"
NOTEBOOKS = REPO / "notebooks"


@dataclass(frozen=True)
class PaperStudy:
    """A sweep whose results feed a figure: the sweep experiment config (`lab sweep --study KIND`)."""

    kind: str  # digits | figure1 | text
    experiment: str  # experiments/conf/experiment/<experiment>.yaml, also the run's name


STUDIES = {
    "figure1": PaperStudy("figure1", "paper_figure1"),
    "model_size": PaperStudy("digits", "paper_model_size"),
    "complexity": PaperStudy("figure1", "paper_complexity"),
    "s_sweep": PaperStudy("digits", "paper_s_sweep"),
    "text": PaperStudy("text", "paper_text"),
}
# notebook -> the tables it needs (it reads any others that exist); extrapolation reads every curve study
NOTEBOOK_INPUTS = {
    "paper_figure1": ["figure1"],
    "paper_model_size": ["model_size"],
    "paper_complexity": ["complexity"],
    "paper_s_sweep": ["s_sweep"],
    "paper_extrapolation": [],
    "paper_text": ["text"],
    "paper_text_s_sweep": ["text"],
}
FINDINGS_ORDER = ["figure1", "model_size", "complexity", "s_sweep", "extrapolation", "text", "text_s_sweep"]


def collect(root: Path, results: Path) -> dict[str, str]:
    """Copy each paper study's finished points into results/<study>.csv; a study without a sweep is reported,
    and an existing table is only replaced by one with at least as many rows (a partial re-run loses nothing),
    unless the existing one is of the earlier protocol (a fair-test table always replaces it)."""
    import pandas as pd

    from lab.run import sweep

    outcome = {}
    for name, study in STUDIES.items():
        folder = root / study.experiment / "sweep"
        if (folder / sweep.LEGACY_PLAN_FILE).exists() and not (folder / sweep.PLAN_FILE).exists():
            outcome[name] = str(sweep.PlanFileError(f"{folder}: launched before plan.json existed; run lab sweep "
                                                    f"--study {study.kind} launch +experiment={study.experiment} "
                                                    f"with its overrides to write it (it resubmits nothing done)"))
            continue
        if not (folder / sweep.PLAN_FILE).exists():
            outcome[name] = f"no sweep at {folder} (run: lab sweep --study {study.kind} launch " \
                            f"+experiment={study.experiment})"
            continue
        staged = results / f".{name}.collecting.csv"
        table = sweep.collect(folder, study.experiment, staged)
        target = results / f"{name}.csv"
        if table.empty:
            staged.unlink()
            outcome[name] = "no finished points yet"
            continue
        if target.exists() and len(pd.read_csv(target)) > len(table) and fair_protocol(target):
            staged.unlink()
            outcome[name] = f"kept {target}: it has more rows than the {len(table)} finished now"
            continue
        staged.replace(target)
        archived = archive_runs(sweep.load_plan(folder), results / RUNS / f"{study.experiment}.jsonl")
        outcome[name] = f"{len(table)} rows -> {target}; {archived} finished run records -> {RUNS}/"
    return outcome


RUNS = "runs"  # results/runs/<experiment>.jsonl: the finished tasks' records, one per line
RECORD_FILES = ("result.json", "config.yaml", "attempts.jsonl")  # kept beside a run directory's result.json
RECORD_SUFFIXES = (".json", ".yaml", ".jsonl")  # what a restore may write: records, never code or weights


def archive_runs(plan: Any, path: Path) -> int:
    """One JSON line per finished task whose dependents all finished too (a pre-training is archived only once
    every fine-tune on it is): {"task": key, "files": {path under <root>/<name>: text}}, the task's outputs
    (result.json, or a render's shard records) and the run directory's config and attempts. No weights, shards
    or checkpoints: a restored task counts as done and is never needed again; one still needed is not archived."""
    import json

    from lab.core.rundir import atomic_write_text

    base = Path(plan.root) / plan.name
    children: dict[str, list[str]] = {task.key: [] for task in plan.tasks}
    for task in plan.tasks:
        for parent in task.depends:
            children.setdefault(parent, []).append(task.key)
    settled: dict[str, bool] = {}
    for task in reversed(plan.tasks):  # a plan lists parents before children
        settled[task.key] = task.done() and all(settled.get(child, False) for child in children[task.key])
    lines = []
    for task in plan.tasks:
        if not settled[task.key]:
            continue
        files = [Path(output) for output in task.outputs]
        files += [output.parent / name for output in files if output.name == "result.json" for name in RECORD_FILES
                  if name != "result.json" and (output.parent / name).is_file()]
        record = {"task": task.key, "files": {f.relative_to(base).as_posix(): f.read_text(encoding="utf-8")
                                              for f in files}}
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(line + "\n" for line in sorted(lines)))
    return len(lines)


def restore_runs(results: Path, root: Path) -> dict[str, str]:
    """Write each archived record back under <root>/<experiment>/ (an existing file is never replaced)."""
    import json

    from lab.core.rundir import atomic_write_text

    outcome = {}
    for archive in sorted((results / RUNS).glob("*.jsonl")):
        written = 0
        for number, line in enumerate(archive.read_text(encoding="utf-8").splitlines(), 1):
            for name, text in json.loads(line)["files"].items():
                relative = Path(name)
                if (relative.is_absolute() or ".." in relative.parts or relative.parts[0] == "sweep"
                        or relative.suffix not in RECORD_SUFFIXES):
                    raise ValueError(f"{archive}:{number}: {name!r} is not a run record (a relative path outside "
                                     f"sweep/ ending in {', '.join(RECORD_SUFFIXES)})")
                target = root / archive.stem / relative
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(target, text)
                    written += 1
        outcome[archive.stem] = f"{written} files restored under {root / archive.stem}"
    return outcome


def execute_notebook(notebook: Path, env: dict[str, str], save_to: Path | None = None, timeout: int = 900) -> Any:
    """Run a notebook top to bottom in a fresh kernel (cwd: notebooks/) with `env` set; a failing cell raises."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,  # no timestamps: a rerun
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()  # leaves git clean
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to)
    return nb


def make_figures(results: Path, out: Path, bootstrap: int = 200, only: list[str] | None = None) -> dict[str, str]:
    """Execute every paper notebook whose input tables exist; then write findings.md and findings.tex."""
    from analysis.reproduction import findings_latex, findings_markdown, load_findings

    from lab.core.rundir import atomic_write_text

    env = {"LAB_PAPER_RESULTS": str(results.resolve()), "LAB_PAPER_OUT": str(out.resolve()),
           "LAB_BOOTSTRAP": str(bootstrap), "MPLBACKEND": "Agg"}
    outcome = {}
    for notebook, inputs in NOTEBOOK_INPUTS.items():
        if only and notebook not in only:
            continue
        missing = [name for name in inputs if not (results / f"{name}.csv").exists()]
        if missing:
            outcome[notebook] = f"skipped: no {', '.join(f'{m}.csv' for m in missing)} in {results}"
            continue
        execute_notebook(NOTEBOOKS / f"{notebook}.ipynb", env, save_to=out / "notebooks" / f"{notebook}.ipynb")
        outcome[notebook] = "ran"
    present = [name for name in FINDINGS_ORDER if (out / "findings" / f"{name}.json").exists()]
    findings = [mark_protocol(f, name, results) for name in present for f in load_findings(out, [name])]
    atomic_write_text(out / "findings.md", findings_markdown(findings))
    atomic_write_text(out / "tables" / "findings.tex", findings_latex(findings))
    return outcome


OLD_PROTOCOL = ("[earlier protocol: pre-training steps tied to n, fixed fine-tuning learning rates, 2 seeds; "
                "re-judged with the paired statistics, not re-run] ")


def fair_protocol(table_path: Path) -> bool:
    """Whether a results table comes from the fair-test protocol: its pre-trainings recorded a held-out metric
    against a trivial baseline and its fine-tunes chose their learning rate on a validation split."""
    import pandas as pd

    columns = pd.read_csv(table_path, nrows=0).columns
    return {"pretrain_heldout", "lr", "val_error"} <= set(columns)


def mark_protocol(finding: Any, name: str, results: Path) -> Any:
    """Prefix a finding measured on tables of the earlier protocol, so no reader takes it for a fair test."""
    from analysis.reproduction import Finding

    tables = [results / f"{name}.csv"] if name != "extrapolation" else sorted(results.glob("*.csv"))
    old = [t for t in tables if t.exists() and not fair_protocol(t)]
    return Finding(finding.claim, finding.paper, OLD_PROTOCOL + finding.lab, finding.verdict) if old else finding


def build_pdf(paper: Path = PAPER) -> Path:
    """pdflatex main.tex twice (references); a missing TeX engine is an error that says what to install."""
    engine = shutil.which("pdflatex")
    if engine is None:
        raise RuntimeError("no TeX engine: pdflatex is not on PATH. Install one (Debian: apt-get install "
                           "texlive-latex-base) and re-run `make paper`; the figures and tables are already in "
                           f"{paper / 'generated'}")
    for _ in range(2):
        run = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "main.tex"], cwd=paper,
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"pdflatex failed (see {paper / 'main.log'}):\n{run.stdout[-2000:]}")
    return paper / "main.pdf"

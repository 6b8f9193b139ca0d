"""conf/hparams: every paper experiment cell evaluates as the authors' scripts do, and
``hparams.source=scripts`` switches DeBERTaV3-base from the paper's Table 9 to the authors'
COMMAND/ scripts where the two disagree (README: paper vs scripts). conf/baseline: a baseline row
trains with its own source's published settings, and only those rows do."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dcft.data.tasks import get_task
from dcft.run.identity import hashed_config, hparams_hash
from dcft.run.settings import check_settings
from dcft.sweep import CONF_DIR, experiments, job_overrides, parts, tables

GLUE = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb")
# --eval_steps of the authors' scripts (github.com/Godz-z/DCFT), all with --evaluation_strategy
# steps; the best evaluation is reported.
EVAL_STEPS = {
    # COMMAND/run_debertav3_<task>.sh at e18a8ff; SQuAD: no authors' script, AdaLoRA's
    # NLG_QA/scripts/run_debertav3_squadv2.sh (3000) for both versions.
    "deberta-v3-base": dict(
        zip(GLUE, (100, 3000, 300, 1000, 3000, 100, 3000, 100), strict=True),
        squad_v1=3000,
        squad_v2=3000,
    ),
    # NLU/COMMANDL/run_debertav3_<task>.sh at 81f78a0^ (RoBERTa-large despite the name)
    "roberta-large": dict(zip(GLUE, (100, 3000, 300, 1000, 3000, 100, 3000, 100), strict=True)),
    # NLU/COMMANDXXL/run_debertav3_<task>.sh at 81f78a0^
    "deberta-v2-xxlarge": dict(
        zip(GLUE, (800, 12000, 600, 4000, 12000, 200, 24000, 800), strict=True)
    ),
}
# --max_seq_length of those scripts, the same on the three models; SQuAD: the paper's Table 10
# (max length 384, doc stride 128).
SCRIPT_MAX_LENGTH = dict(zip(GLUE, (64, 256, 320, 512, 320, 320, 128, 128), strict=True))
SCRIPT_MAX_LENGTH |= {"squad_v1": 384, "squad_v2": 384}
# DeBERTaV3-base: (task, trainer key) -> (paper's Table 9, COMMAND/run_debertav3_<task>.sh)
DISAGREE = {
    ("cola", "learning_rate"): (5e-4, 8e-4),
    ("qnli", "learning_rate"): (1.2e-3, 5e-4),
    ("qnli", "batch_size"): (32, 16),
    ("qnli", "num_epochs"): (6, 5),
    ("qqp", "num_epochs"): (20, 5),
}
# DCFT's orthogonal-regulariser weight: Table 9's "Dropout" column (AdaLoRA's Table 8 gamma, the
# regularisation coefficient) against the scripts' --reg_orth_coef.
DISAGREE_GAMMA = {"cola": (0.5, 0.1), "stsb": (0.1, 0.3)}
SCRIPTS_GAMMA = {"rte": 0.3, "stsb": 0.3}  # every other GLUE task: 0.1


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def _cfg(model: str, task: str, *overrides: str, method: str = "dcft"):
    return compose(
        "config", overrides=[f"model={model}", f"task={task}", f"method={method}", *overrides]
    )


def test_every_hparams_file_is_listed_here():
    """The paper models' files, plus the CPU study's MiniLM budgets (tests/test_study.py)."""
    files = {(p.parent.name, p.stem) for p in (CONF_DIR / "hparams").glob("*/*.yaml")}
    study = {("minilm", t) for t in ("cola", "sst2", "mrpc", "stsb")}
    assert files == {(m, t) for m, steps in EVAL_STEPS.items() for t in steps} | study


def test_every_paper_cell_evaluates_as_the_authors_scripts(hydra_conf):
    for table in tables():
        for experiment in experiments(table):
            for job in job_overrides(experiment, ["seed=0"]):
                cfg = compose("config", overrides=[f"experiment={experiment}", *job])
                steps = EVAL_STEPS[cfg.model.name][cfg.task.name]
                assert cfg.trainer.eval_strategy == "steps", (experiment, job)
                assert cfg.trainer.eval_steps == steps, (experiment, job)
                # The protocol is part of the run's key and record.
                assert hashed_config(cfg)["trainer"]["eval_steps"] == steps
                check_settings(cfg)  # every key declared, every number valid


@pytest.mark.parametrize(("task", "key"), sorted(DISAGREE))
def test_scripts_variant_is_one_override_away(hydra_conf, task, key):
    paper, scripts = DISAGREE[(task, key)]
    assert _cfg("deberta-v3-base", task).trainer[key] == paper
    assert _cfg("deberta-v3-base", task, "hparams.source=scripts").trainer[key] == scripts
    # LoRA-family methods take DCFT's rate; full fine-tuning keeps its own.
    lora = _cfg("deberta-v3-base", task, "hparams.source=scripts", method="lora")
    assert lora.trainer[key] == scripts
    full = _cfg("deberta-v3-base", task, "hparams.source=scripts", method="full")
    assert full.trainer.learning_rate == 2e-5


@pytest.mark.parametrize(
    ("model", "task"), [(m, t) for m, steps in EVAL_STEPS.items() for t in steps]
)
def test_scripts_variant_changes_only_the_disagreements(hydra_conf, model, task):
    """Where the paper and the scripts agree the variant is the same run (same hash); every paper
    model accepts the override, so it can be passed to any paper table's sweep."""
    paper = _cfg(model, task)
    scripts = _cfg(model, task, "hparams.source=scripts")
    assert paper.task.max_length == scripts.task.max_length == SCRIPT_MAX_LENGTH[task]
    keys = {k for (t, k) in DISAGREE if t == task and model == "deberta-v3-base"}
    differs = {k for k in paper.trainer if paper.trainer[k] != scripts.trainer[k]}
    assert differs == keys
    gamma_differs = paper.method.options.gamma != scripts.method.options.gamma
    assert gamma_differs == (model == "deberta-v3-base" and task in DISAGREE_GAMMA)
    if not keys and not gamma_differs:
        assert hparams_hash(paper) == hparams_hash(scripts)


def test_hparams_files_do_not_repeat_the_task_specs_truncation():
    """max_length and doc_stride are declared in TaskSpec (dcft.data.tasks), the authors'
    values: a paper model's file never copies them (the CPU study's MiniLM files set the study's
    own budget, which equals the spec's on CoLA and STS-B and does not follow it)."""
    for path in sorted((CONF_DIR / "hparams").glob("*/*.yaml")):
        if path.parent.name not in EVAL_STEPS:
            continue
        task = OmegaConf.load(path).get("task") or {}
        spec = get_task(path.stem)
        copies = [key for key in task if task[key] == getattr(spec, key)]
        assert not copies, (path, copies)
    assert get_task("squad_v1").doc_stride == 128


@pytest.mark.parametrize("task", GLUE)
def test_regulariser_weight_reads_table9_dropout_column(hydra_conf, task):
    """Paper (default): Table 9's "Dropout" column (CoLA 0.5, RTE 0.3, the rest 0.1); scripts:
    --reg_orth_coef (0.3 for RTE and STS-B, the rest 0.1)."""
    paper = {"cola": 0.5, "rte": 0.3}.get(task, 0.1)
    assert _cfg("deberta-v3-base", task).method.options.gamma == paper
    scripts = _cfg("deberta-v3-base", task, "hparams.source=scripts").method.options.gamma
    assert scripts == SCRIPTS_GAMMA.get(task, 0.1)
    assert (paper != scripts) == (task in DISAGREE_GAMMA)


# SoRA's scripts (TsinghuaC3I/SoRA @ c275ac2): the recipe of every GLUE script, and the STS-B
# values of scripts/run_glue_sora_no_schedule.sh.
SORA_RECIPE = {"weight_decay": 0.1, "max_grad_norm": 0.1, "warmup_steps": 0, "warmup_ratio": 0.06}
SORA_STSB = {"learning_rate": 8e-4, "batch_size": 8, "num_epochs": 20}


@pytest.mark.parametrize("task", GLUE)
def test_sora_rows_train_with_soras_own_settings(hydra_conf, task):
    sora = _cfg("deberta-v3-base", task, method="sora")
    dcft = _cfg("deberta-v3-base", task)
    expected = {**SORA_RECIPE, **(SORA_STSB if task == "stsb" else {})}
    assert {k: sora.trainer[k] for k in expected} == expected
    others = set(dcft.trainer) - set(expected) - {"lr_scheduler"}
    assert {k: sora.trainer[k] for k in others} == {k: dcft.trainer[k] for k in others}
    assert set(sora.hparams.sources.trainer) >= set(expected) - {"warmup_steps"}


def test_sora_settings_stay_with_sora_on_deberta_v3_base(hydra_conf):
    """Other methods, and SoRA on models its scripts never ran, keep DCFT's settings."""
    lora = _cfg("deberta-v3-base", "stsb", method="lora")
    assert lora.trainer.weight_decay == 0.1 and lora.trainer.max_grad_norm == 1.0  # DCFT's
    assert lora.trainer.batch_size == 32 and "sources" not in lora.hparams
    mini = _cfg("minilm", "stsb", method="sora")
    assert mini.trainer.max_grad_norm == 1.0 and "sources" not in mini.hparams


# The other baselines' published settings, transcribed from their sources (not from
# conf/baseline/), each per-task row in its source's column order.
def _by_task(columns: tuple[str, ...], *values: float) -> dict[str, float]:
    return dict(zip(columns, values, strict=True))


LORA_COLUMNS = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")  # its Tables 9, 10
FAIRSEQ_COLUMNS = ("mnli", "qnli", "qqp", "rte", "sst2", "mrpc", "cola", "stsb")  # README.glue.md
# LoRA paper (arXiv 2106.09685) Table 9, rows marked †: warmup ratio 0.06, linear decay, length
# 128; its code (microsoft/LoRA examples/NLU) keeps RoBERTa's classifier dropout 0.1 and
# transformers' clipping 1.0.
LORA_DAGGER = {
    "trainer.warmup_steps": 0,
    "trainer.warmup_ratio": 0.06,
    "trainer.lr_scheduler": "linear",
    "trainer.max_grad_norm": 1.0,
    "task.max_length": 128,
    "model.cls_dropout": 0.1,
}
PUBLISHED = {
    # Table 9 "RoBERTa large LoRA†"; weight decay: examples/NLU/roberta_large_<task>.sh.
    ("lora-r8-qv", "roberta-large"): {
        **LORA_DAGGER,
        "trainer.batch_size": 4,
        "trainer.weight_decay": 0.1,
        "trainer.num_epochs": _by_task(LORA_COLUMNS, 10, 10, 20, 20, 10, 20, 20, 10),
        "trainer.learning_rate": _by_task(
            LORA_COLUMNS, 3e-4, 4e-4, 3e-4, 2e-4, 2e-4, 3e-4, 4e-4, 2e-4
        ),
    },
    # Table 9 "RoBERTa large AdptH (0.8M)†" and "AdptP (0.8M)†"; their scripts set no decay.
    ("hadapter", "roberta-large"): {
        **LORA_DAGGER,
        "trainer.batch_size": 32,
        "trainer.learning_rate": 3e-4,
        "trainer.weight_decay": 0.0,
        "trainer.num_epochs": _by_task(LORA_COLUMNS, 10, 5, 10, 10, 5, 20, 20, 10),
    },
    ("padapter", "roberta-large"): {
        **LORA_DAGGER,
        "trainer.batch_size": 32,
        "trainer.learning_rate": 3e-4,
        "trainer.weight_decay": 0.0,
        "trainer.num_epochs": _by_task(LORA_COLUMNS, 5, 20, 20, 20, 10, 20, 20, 20),
    },
    # RoBERTa paper (arXiv 1907.11692) §5.1 and Tables 9-10; rate and batch per task from
    # fairseq's examples/roberta/README.glue.md, which also sets --max-positions 512.
    ("full", "roberta-large"): {
        "trainer.num_epochs": 10,
        "trainer.warmup_steps": 0,
        "trainer.warmup_ratio": 0.06,
        "trainer.lr_scheduler": "linear",
        "trainer.weight_decay": 0.1,
        "trainer.max_grad_norm": 0.0,
        "task.max_length": 512,
        "model.cls_dropout": 0.0,
        "trainer.learning_rate": _by_task(
            FAIRSEQ_COLUMNS, 1e-5, 1e-5, 1e-5, 2e-5, 1e-5, 1e-5, 1e-5, 2e-5
        ),
        "trainer.batch_size": _by_task(FAIRSEQ_COLUMNS, 32, 32, 32, 16, 32, 16, 16, 16),
    },
    # DeBERTa paper (arXiv 2006.03654) Table 9; per task: microsoft/DeBERTa
    # experiments/glue/<task>.sh, case xxlarge-v2 (GLUE order).
    ("full", "deberta-v2-xxlarge"): {
        "trainer.warmup_ratio": 0.0,
        "trainer.lr_scheduler": "linear",
        "trainer.weight_decay": 0.01,
        "trainer.max_grad_norm": 1.0,
        "trainer.learning_rate": _by_task(GLUE, 2.5e-6, 3e-6, 2e-6, 3e-6, 3e-6, 3e-6, 3e-6, 3e-6),
        "trainer.batch_size": _by_task(GLUE, 32, 64, 32, 64, 64, 48, 32, 32),
        "trainer.num_epochs": _by_task(GLUE, 10, 3, 6, 4, 10, 6, 4, 4),
        "trainer.warmup_steps": _by_task(GLUE, 100, 1000, 50, 500, 1000, 50, 500, 100),
        "model.cls_dropout": _by_task(GLUE, 0.2, 0.3, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2),
        "task.max_length": _by_task(GLUE, 64, 256, 128, 512, 320, 320, 128, 128),
    },
    # LoRA paper Table 10 "DeBERTa XXL LoRA".
    ("lora-r16-qv", "deberta-v2-xxlarge"): {
        "trainer.warmup_steps": 0,
        "trainer.warmup_ratio": 0.1,
        "trainer.lr_scheduler": "linear",
        "trainer.max_grad_norm": 1.0,
        "trainer.batch_size": _by_task(LORA_COLUMNS, 8, 8, 32, 4, 6, 8, 4, 4),
        "trainer.num_epochs": _by_task(LORA_COLUMNS, 5, 16, 30, 10, 8, 11, 11, 10),
        "trainer.learning_rate": _by_task(
            LORA_COLUMNS, 1e-4, 6e-5, 2e-4, 1e-4, 1e-4, 1e-4, 2e-4, 2e-4
        ),
        "trainer.weight_decay": _by_task(LORA_COLUMNS, 0, 0.01, 0.01, 0, 0.01, 0.01, 0.01, 0.1),
        "model.cls_dropout": _by_task(LORA_COLUMNS, 0.15, 0, 0, 0.1, 0.1, 0.2, 0.2, 0.2),
        "task.max_length": _by_task(LORA_COLUMNS, 256, 128, 128, 64, 512, 320, 320, 128),
    },
}


def _published(method: str, model: str, task: str) -> dict[str, object]:
    row = PUBLISHED[(method, model)]
    return {k: v[task] if isinstance(v, dict) else v for k, v in row.items()}


@pytest.mark.parametrize(
    ("method", "model", "task"), [(m, model, t) for (m, model) in PUBLISHED for t in GLUE]
)
def test_baseline_rows_train_with_their_sources_settings(hydra_conf, method, model, task):
    """Every value the row's source gives, each with its source named; every other setting (the
    evaluation schedule, precision, ...) and the method itself as without conf/baseline/."""
    row = _cfg(model, task, method=method)
    without = _cfg(model, task, "~baseline", method=method)
    expected = _published(method, model, task)
    assert {k: OmegaConf.select(row, k) for k in expected} == expected
    for group in ("trainer", "task", "model"):
        given = {k.split(".", 1)[1] for k in expected if k.startswith(f"{group}.")}
        others = set(without[group]) - given
        assert {k: row[group][k] for k in others} == {k: without[group][k] for k in others}
        if given:
            assert set(row.hparams.sources[group]) >= given - {"warmup_steps", "warmup_ratio"}
    assert row.method == without.method


def _swept_rows(scale: str) -> dict[tuple[str, str], list[str]]:
    """(method choice, model) of every row the tables sweep at ``scale`` -> one job's overrides."""
    rows: dict[tuple[str, str], list[str]] = {}
    for table in tables(scale):
        for part in parts(table, scale):
            model = compose("config", overrides=part.fixed()).model.name
            for job in part.jobs(["seed=0"]):
                given = dict(o.split("=", 1) for o in job)
                key = (given["method"], given.get("model", model))
                rows.setdefault(key, [*part.fixed(), *job])
    return rows


@pytest.mark.parametrize("scale", ["paper", "mini"])
def test_only_rows_whose_source_publishes_settings_leave_dcfts(hydra_conf, scale):
    """Rows with nothing published (LoRA-FA r = 16 on RoBERTa-large, the DeBERTaV3-base baselines
    but SoRA, the SQuAD rows, DCFT itself) keep DCFT's settings; the CPU study's MiniLM runs take
    no baseline file, so its committed records keep their keys."""
    own = {*PUBLISHED, ("sora", "deberta-v3-base")}
    rows = _swept_rows(scale)
    with_sources = {key for key, job in rows.items() if "sources" in compose("config", job).hparams}
    assert with_sources == own & set(rows)
    if scale == "paper":
        assert set(PUBLISHED) <= set(rows)  # every file here belongs to a paper row

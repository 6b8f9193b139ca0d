"""conf/hparams: every paper experiment cell evaluates as the authors' scripts do, and
``hparams.source=scripts`` switches DeBERTaV3-base from the paper's Table 9 to the authors'
COMMAND/ scripts where the two disagree (README: paper vs scripts)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from dcft.run.identity import hashed_config, hparams_hash
from dcft.run.settings import check_settings
from dcft.sweep import CONF_DIR, experiments, job_overrides, tables

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
    keys = {k for (t, k) in DISAGREE if t == task and model == "deberta-v3-base"}
    differs = {k for k in paper.trainer if paper.trainer[k] != scripts.trainer[k]}
    assert differs == keys
    gamma_differs = paper.method.options.gamma != scripts.method.options.gamma
    assert gamma_differs == (model == "deberta-v3-base" and task in DISAGREE_GAMMA)
    if not keys and not gamma_differs:
        assert hparams_hash(paper) == hparams_hash(scripts)


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

"""Registry of the benchmark tasks: what each one is called on the Hub, its columns and metric."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["glue", "squad"]


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    ``label_names`` follows the Hugging Face ``glue`` ClassLabel order; it is empty for the
    regression task (STS-B) and for SQuAD.
    """

    name: str
    label: str  # as the paper and the GLUE distribution print it: CoLA, STS-B, SQuADv1.1
    kind: TaskKind
    hub_id: str
    hub_config: str | None
    text_fields: tuple[str, ...]
    num_labels: int
    label_names: tuple[str, ...]
    metric: str
    eval_splits: tuple[str, ...]
    max_length: int
    doc_stride: int | None = None

    @property
    def is_regression(self) -> bool:
        return self.kind == "glue" and self.num_labels == 1

    @property
    def splits(self) -> tuple[str, ...]:
        """All splits :func:`dcft.data.load_raw_splits` returns: ``train`` then the eval splits."""
        return ("train", *self.eval_splits)


def _glue(
    config: str,
    label: str,
    text_fields: tuple[str, ...],
    label_names: tuple[str, ...],
    metric: str,
    max_len: int,
) -> TaskSpec:
    return TaskSpec(
        name=config,
        label=label,
        kind="glue",
        hub_id="nyu-mll/glue",
        hub_config=config,
        text_fields=text_fields,
        num_labels=max(len(label_names), 1),
        label_names=label_names,
        metric=metric,
        eval_splits=("validation_matched", "validation_mismatched")
        if config == "mnli"
        else ("validation",),
        max_length=max_len,
    )


def _squad(name: str, label: str, hub_id: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        label=label,
        kind="squad",
        hub_id=hub_id,
        hub_config=None,
        text_fields=("question", "context"),
        num_labels=2,
        label_names=(),
        metric="f1",
        eval_splits=("validation",),
        max_length=384,
        doc_stride=128,
    )


_ENTAIL = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue(
            "cola",
            "CoLA",
            ("sentence",),
            ("unacceptable", "acceptable"),
            "matthews_correlation",
            64,
        ),
        _glue("sst2", "SST-2", ("sentence",), ("negative", "positive"), "accuracy", 128),
        _glue(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            "accuracy",
            320,
        ),
        _glue(
            "qqp",
            "QQP",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            "accuracy",
            320,
        ),
        _glue("stsb", "STS-B", ("sentence1", "sentence2"), (), "pearson", 128),
        _glue(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            256,
        ),
        _glue("qnli", "QNLI", ("question", "sentence"), _ENTAIL, "accuracy", 512),
        _glue("rte", "RTE", ("sentence1", "sentence2"), _ENTAIL, "accuracy", 320),
        _squad("squad_v1", "SQuADv1.1", "rajpurkar/squad"),
        _squad("squad_v2", "SQuADv2.0", "rajpurkar/squad_v2"),
    )
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by its registry name; unknown names raise ``ValueError`` listing choices."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; valid choices: {', '.join(sorted(TASKS))}"
        ) from None

"""Registry of the benchmark tasks: the one place each task is declared.

A :class:`TaskSpec` holds everything the code needs to know about a task (its Hub name, fields,
labels, metrics, truncation length and local file layout); the readers, metrics, scorer and the
Hydra task configs (``max_length: ${task_spec:max_length}``) all read it from here. Adding a
GLUE-like task is one entry in :data:`TASKS` plus ``conf/task/<name>.yaml``.

It imports only the standard library (the ``task_spec`` config resolver reads it while Hydra
composes a config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["glue", "squad"]


@dataclass(frozen=True)
class TsvLayout:
    """Where a GLUE task's fields sit in its distribution TSVs, ``glue/<folder>/<split>.tsv``.

    ``columns`` pairs each text field and ``label`` with its column: a header name, or a 0-based
    position when the files have no header row (CoLA). ``word_labels``: labels are spelled as
    the task's ``label_names`` (MNLI, QNLI, RTE), not as class ids.
    """

    folder: str
    columns: tuple[tuple[str, str | int], ...]
    word_labels: bool = False

    @property
    def header(self) -> bool:
        return not any(isinstance(column, int) for _, column in self.columns)


@dataclass(frozen=True)
class TestSplit:
    """A GLUE test split (labels hidden): its TSV in the task's folder, ``glue/<folder>/<tsv>``,
    and the file the GLUE benchmark server takes its predictions in (``submission``)."""

    split: str
    tsv: str
    submission: str


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one task.

    ``label_names`` follows the Hugging Face ``glue`` ClassLabel order; it is empty for the
    regression task (STS-B) and for SQuAD. ``metrics`` are the scores an eval split reports
    (:func:`dcft.data.metrics.glue_metrics` computes exactly these for GLUE), the headline one
    the paper prints first. ``tsv`` (GLUE) and ``squad_version`` (SQuAD: ``v1.1`` / ``v2.0``,
    the folder and suffix of its JSON files) say where the local files are; GLUE's parquet
    copies sit in ``glue_parquet/<hub_config>/<split>/``. ``test_splits`` are the GLUE test sets
    predicted for the benchmark server, their TSVs read through ``test_columns`` (each text field
    and ``idx``: the header column holding it).
    """

    name: str
    label: str  # as the paper and the GLUE distribution print it: CoLA, STS-B, SQuADv1.1
    kind: TaskKind
    hub_id: str
    hub_config: str | None
    text_fields: tuple[str, ...]
    num_labels: int
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    eval_splits: tuple[str, ...]
    max_length: int
    doc_stride: int | None = None
    tsv: TsvLayout | None = None
    squad_version: str | None = None
    test_splits: tuple[TestSplit, ...] = ()
    test_columns: tuple[tuple[str, str], ...] = ()
    # Your own data (task=custom, dcft.data.custom): split -> file, instead of the GLUE layout.
    files: tuple[tuple[str, str], ...] = ()
    # Examples per split of the release (the Hub's copy), what the preflight prices a run by
    # when the data is not here (tests/test_tasks.py holds them equal to the local files).
    published_sizes: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        """Refuse an entry the readers could not use (checked when the registry is built)."""
        if self.kind == "glue":
            read = {field for field, _ in self.tsv.columns} if self.tsv else set()
            if read != {*self.text_fields, "label"}:
                raise ValueError(
                    f"task {self.name!r}: its TSV layout must place exactly the text fields "
                    f"{list(self.text_fields)} and 'label', not {sorted(read)}"
                )
            tested = {field for field, _ in self.test_columns}
            if self.test_splits and tested != {*self.text_fields, "idx"}:
                raise ValueError(
                    f"task {self.name!r}: its test columns must place exactly the text fields "
                    f"{list(self.text_fields)} and 'idx', not {sorted(tested)}"
                )
        elif self.squad_version is None or self.doc_stride is None:
            raise ValueError(f"SQuAD task {self.name!r} needs a squad_version and a doc_stride")

    @property
    def paper_units(self) -> float:
        """Record value -> the paper's units, the one place this is said: GLUE scores are
        recorded 0-1 and printed x100, SQuAD's EM/F1 are recorded 0-100 and printed as is."""
        return 1.0 if self.kind == "squad" else 100.0

    @property
    def metric(self) -> str:
        """The headline metric (the paper's number for the task): the first of ``metrics``."""
        return self.metrics[0]

    @property
    def is_regression(self) -> bool:
        return self.kind == "glue" and self.num_labels == 1

    @property
    def example_columns(self) -> tuple[str, ...]:
        """What makes an example what it is for training and scoring: the text fields and the
        label (SQuAD: the answers). Not GLUE's ``idx`` (MRPC's TSV and Hub numberings differ),
        nor SQuAD's question ids and titles."""
        return (*self.text_fields, "answers" if self.kind == "squad" else "label")

    @property
    def splits(self) -> tuple[str, ...]:
        """All splits :func:`dcft.data.load_raw_splits` returns: ``train`` then the eval splits."""
        return ("train", *self.eval_splits)


def tsv_layout(folder: str, *, word_labels: bool = False, **columns: str | int) -> TsvLayout:
    """``tsv_layout("SST-2", sentence="sentence", label="label")``: fields in text-field order."""
    return TsvLayout(folder, tuple(columns.items()), word_labels)


def _glue(
    name: str,
    label: str,
    layout: TsvLayout,
    label_names: tuple[str, ...],
    metrics: tuple[str, ...],
    max_length: int,
    eval_splits: tuple[str, ...] = ("validation",),
    test_splits: tuple[TestSplit, ...] | None = None,
    test_columns: dict[str, str] | None = None,
    published_sizes: tuple[tuple[str, int], ...] = (),
) -> TaskSpec:
    """A task of the Hub's ``nyu-mll/glue``; its text fields are the layout's non-label fields.
    No ``label_names`` means a regression task (one output). The test set is ``test.tsv``,
    submitted as ``<label>.tsv``, with the train files' text headers and an ``index`` column
    unless told otherwise."""
    texts = {field: str(column) for field, column in layout.columns if field != "label"}
    return TaskSpec(
        name=name,
        label=label,
        kind="glue",
        hub_id="nyu-mll/glue",
        hub_config=name,
        text_fields=tuple(field for field, _ in layout.columns if field != "label"),
        num_labels=max(len(label_names), 1),
        label_names=label_names,
        metrics=metrics,
        eval_splits=eval_splits,
        max_length=max_length,
        tsv=layout,
        test_splits=test_splits or (TestSplit("test", "test.tsv", f"{label}.tsv"),),
        test_columns=tuple((test_columns or {**texts, "idx": "index"}).items()),
        published_sizes=published_sizes,
    )


def _squad(
    name: str, label: str, hub_id: str, version: str, published_sizes: tuple[tuple[str, int], ...]
) -> TaskSpec:
    return TaskSpec(
        name=name,
        label=label,
        kind="squad",
        hub_id=hub_id,
        hub_config=None,
        text_fields=("question", "context"),
        num_labels=2,
        label_names=(),
        metrics=("f1", "exact_match"),
        eval_splits=("validation",),
        max_length=384,
        doc_stride=128,
        squad_version=version,
        published_sizes=published_sizes,
    )


_ENTAIL = ("entailment", "not_entailment")

# max_length: the authors' launch scripts' --max_seq_length, the same on all three paper models
# (github.com/Godz-z/DCFT COMMAND/ at e18a8ff, NLU/COMMANDL/ and NLU/COMMANDXXL/ at 81f78a0^);
# SQuAD's max_length and doc_stride: the paper's Table 10. conf/hparams does not repeat them
# (tests/test_hparams.py); a study's own budget (conf/hparams/minilm) overrides them.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _glue(
            "cola",
            "CoLA",
            tsv_layout("CoLA", sentence=3, label=1),
            label_names=("unacceptable", "acceptable"),
            metrics=("matthews_correlation",),
            max_length=64,
            test_columns={"sentence": "sentence", "idx": "index"},  # its test.tsv has a header
            published_sizes=(("train", 8551), ("validation", 1043)),
        ),
        _glue(
            "sst2",
            "SST-2",
            tsv_layout("SST-2", sentence="sentence", label="label"),
            label_names=("negative", "positive"),
            metrics=("accuracy",),
            max_length=128,
            published_sizes=(("train", 67349), ("validation", 872)),
        ),
        _glue(
            "mrpc",
            "MRPC",
            tsv_layout("MRPC", sentence1="#1 String", sentence2="#2 String", label="Quality"),
            label_names=("not_equivalent", "equivalent"),
            metrics=("accuracy", "f1"),
            max_length=320,
            published_sizes=(("train", 3668), ("validation", 408)),
        ),
        _glue(
            "qqp",
            "QQP",
            tsv_layout("QQP", question1="question1", question2="question2", label="is_duplicate"),
            label_names=("not_duplicate", "duplicate"),
            metrics=("accuracy", "f1"),
            max_length=320,
            test_columns={"question1": "question1", "question2": "question2", "idx": "id"},
            published_sizes=(("train", 363846), ("validation", 40430)),
        ),
        _glue(
            "stsb",
            "STS-B",
            tsv_layout("STS-B", sentence1="sentence1", sentence2="sentence2", label="score"),
            label_names=(),
            metrics=("pearson", "spearman"),
            max_length=128,
            published_sizes=(("train", 5749), ("validation", 1500)),
        ),
        _glue(
            "mnli",
            "MNLI",
            tsv_layout(
                "MNLI",
                premise="sentence1",
                hypothesis="sentence2",
                label="gold_label",
                word_labels=True,
            ),
            label_names=("entailment", "neutral", "contradiction"),
            metrics=("accuracy",),
            max_length=256,
            eval_splits=("validation_matched", "validation_mismatched"),
            test_splits=(
                TestSplit("test_matched", "test_matched.tsv", "MNLI-m.tsv"),
                TestSplit("test_mismatched", "test_mismatched.tsv", "MNLI-mm.tsv"),
            ),
            published_sizes=(
                ("train", 392702),
                ("validation_matched", 9815),
                ("validation_mismatched", 9832),
            ),
        ),
        _glue(
            "qnli",
            "QNLI",
            tsv_layout(
                "QNLI", question="question", sentence="sentence", label="label", word_labels=True
            ),
            label_names=_ENTAIL,
            metrics=("accuracy",),
            max_length=512,
            published_sizes=(("train", 104743), ("validation", 5463)),
        ),
        _glue(
            "rte",
            "RTE",
            tsv_layout(
                "RTE", sentence1="sentence1", sentence2="sentence2", label="label", word_labels=True
            ),
            label_names=_ENTAIL,
            metrics=("accuracy",),
            max_length=320,
            published_sizes=(("train", 2490), ("validation", 277)),
        ),
        _squad(
            "squad_v1",
            "SQuADv1.1",
            "rajpurkar/squad",
            "v1.1",
            (("train", 87599), ("validation", 10570)),
        ),
        _squad(
            "squad_v2",
            "SQuADv2.0",
            "rajpurkar/squad_v2",
            "v2.0",
            (("train", 130319), ("validation", 11873)),
        ),
    )
}


# Tasks built from a run's config for its process (task=custom: dcft.data.custom).
_REGISTERED: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> None:
    """Make ``spec`` what ``get_task(spec.name)`` returns in this process (replacing an earlier
    one of that name); the built-in tasks cannot be replaced."""
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} is built in; choose another name")
    _REGISTERED[spec.name] = spec


def get_task(name: str) -> TaskSpec:
    """Look a task up by its registry name; unknown names raise ``ValueError`` listing choices."""
    spec = TASKS.get(name) or _REGISTERED.get(name)
    if spec is None:
        raise ValueError(
            f"unknown task {name!r}; valid choices: {', '.join(sorted(TASKS))} (and custom, "
            "read from its files)"
        )
    return spec

"""The task registry: every shared dataset as a named task, plus user tasks from a manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.settings import data_dir
from embedlab.validation import format_validation_error

TaskType = Literal["sts", "retrieval", "classification", "clustering", "pair_classification", "reranking"]
CATEGORY = {
    "sts": "STS",
    "retrieval": "Retrieval",
    "classification": "Classification",
    "clustering": "Clustering",
    "pair_classification": "PairClassification",
    "reranking": "Reranking",
}
MAIN_METRIC = {
    "sts": "cosine_spearman",
    "retrieval": "ndcg_at_10",
    "classification": "accuracy",
    "clustering": "v_measure",
    "pair_classification": "max_ap",
    "reranking": "map",
}


SPLIT_ROLES = ("train", "validation", "dev", "test")


class TaskSpec(BaseModel):
    """A task: what to read and how to score it. Unknown fields are errors (typos get caught)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: TaskType
    files: dict[str, str]  # role -> path relative to root (see README of docs/evaluation.md)
    metric: str | None = None
    split: str = "test"
    mteb_name: str | None = None
    description: str = ""
    instruction: str = ""  # E5-style task definition, used when an instruction template is given at evaluation
    # classification
    samples_per_label: int | None = Field(default=8, gt=0)  # None: use the whole train split
    n_experiments: int = Field(default=10, gt=0)
    cv_folds: int | None = Field(default=None, gt=1)  # SentEval-style k-fold when there is no split
    subsets: list[str] | None = None  # multi-subset tasks: files keys are "<subset>/<role>"
    eval_splits: list[str] | None = None  # MTEB order of (split) evaluation, RNG carried over
    text_column: str = "text"
    label_column: str = "label"
    # pair classification: files concatenated into one evaluation set (MTEB merges TwitterURL's train+test)
    merge_roles: list[str] | None = None
    # clustering (MTEB 1.12 AbsTaskClusteringFast defaults)
    max_documents_to_embed: int = Field(default=16_384, gt=0)  # downsample (without replacement) before embedding
    max_documents_per_cluster: int = Field(default=2_048, gt=0)  # size of each bootstrap draw (with replacement)
    n_bootstrap: int = Field(default=10, gt=0)  # draws per level (mteb calls it n_clusters)
    kmeans_batch_size: int = Field(default=512, gt=0)
    max_depth: int | None = Field(default=None, gt=0)  # hierarchical labels: levels evaluated (None: all)
    label_separator: str | None = Field(default=None, min_length=1)  # "a/b" -> levels ["a", "b"] when set to "/"
    # sts
    score_range: tuple[float, float] = (0.0, 5.0)
    # retrieval
    ignore_identical_ids: bool = True
    root: Path | None = None
    quick: bool = False
    identical_to_mteb: bool = False

    @field_validator("files")
    @classmethod
    def _files_not_empty(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("files must name at least one file")
        return v

    @model_validator(mode="after")
    def _known_roles(self) -> "TaskSpec":
        known = self.known_roles()
        for role in self.files:
            if self.subsets and self.type != "retrieval":
                sub, _, base = role.partition("/")
                if sub not in self.subsets or not base:
                    raise ValueError(
                        f"unknown file role '{role}': a multi-subset task names its files "
                        f"'<subset>/<role>' with subset in {', '.join(self.subsets)}"
                    )
            else:
                base = role
            if base not in known:
                raise ValueError(
                    f"unknown file role '{role}' for a {self.type} task (known: {', '.join(sorted(known))})"
                )
        return self

    def known_roles(self) -> set[str]:
        """The file roles a task of this type reads (split names; corpus/queries/qrels; ``all`` for CV)."""
        if self.type == "retrieval":
            return {"corpus", "queries", "qrels"}
        roles = set(SPLIT_ROLES) | {self.split} | set(self.eval_splits or []) | set(self.merge_roles or [])
        if self.type == "classification":
            roles.add("all")
        return roles

    @property
    def evaluation_splits(self) -> list[str]:
        """The splits evaluated, in order; the last one is ``split`` (the reported main score).

        As MTEB 1.12 (``MTEB.run`` loops over the task's ``eval_splits``, carrying numpy's RNG): a task
        with a ``validation`` file besides its ``split`` file evaluates validation first, then ``split``.
        ``eval_splits`` in the manifest overrides this. Retrieval, CV and merged-roles tasks have one
        evaluation set."""
        if self.eval_splits:
            splits = [s for s in self.eval_splits if s != self.split]
            return [*splits, self.split]
        if self.type == "retrieval" or self.cv_folds or self.merge_roles or self.split == "validation":
            return [self.split]
        bases = {r.partition("/")[2] if self.subsets else r for r in self.files}
        return ["validation", self.split] if "validation" in bases else [self.split]

    @property
    def main_metric(self) -> str:
        return self.metric or MAIN_METRIC[self.type]

    @property
    def category(self) -> str:
        return CATEGORY[self.type]

    def path(self, role: str) -> Path:
        if role not in self.files:
            raise EmbedlabError(f"task {self.name}: no file for '{role}' in its manifest")
        assert self.root is not None
        return self.root / self.files[role]

    def all_paths(self) -> list[Path]:
        assert self.root is not None
        return [self.root / f for f in self.files.values()]


# E5-mistral / NV-Embed task definitions (query side; documents get none)
INSTRUCTIONS = {
    "sts": "Retrieve semantically similar text.",
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "Banking77Classification": "Given a online banking query, find the corresponding intents",
    "AmazonCounterfactualClassification": "Classify a given Amazon customer review text as either counterfactual or not-counterfactual",
    "TweetSentimentExtractionClassification": "Classify the sentiment of a given tweet as either positive, negative, or neutral",
    "ImdbClassification": "Classify the sentiment expressed in the given movie review text from the IMDB dataset",
    "MR": "Classify the sentiment of a given movie review",
    "CR": "Classify the sentiment of a given customer review",
    "SST2": "Classify the sentiment expressed in the given movie review text",
    "TwentyNewsgroupsClustering": "Identify the topic or theme of the given news articles",
    "AGNewsClustering": "Identify the topic or theme of the given news articles",
    "TwitterURLCorpus": "Retrieve tweets that are semantically similar to the given tweet",
    "TrecQA": "Given a question, retrieve sentences that answer the question",
}


def _builtin_specs() -> list[dict[str, Any]]:
    sts = lambda name, folder, mteb, rng=(0.0, 5.0), quick=False: dict(  # noqa: E731
        name=name,
        type="sts",
        files={"test": "test.tsv"},
        root=folder,
        mteb_name=mteb,
        score_range=rng,
        quick=quick,
        identical_to_mteb=True,
        instruction=INSTRUCTIONS["sts"],
    )
    amazon_files = {
        f"{sub}/{split}": f"{folder}/{split}.tsv"
        for sub, folder in (("en-ext", "en-ext"), ("en", "en"), ("de", "de"), ("ja", "jp"))
        for split in ("train", "validation", "test")
    }
    specs: list[dict[str, Any]] = [
        sts("STSBenchmark", "stsbenchmark", "STSBenchmark", quick=True),
        sts("SICK-R", "sick-r", "SICK-R", (1.0, 5.0)),
        sts("STS12", "sts12", "STS12"),
        sts("STS14", "sts14", "STS14"),
        sts("STS15", "sts15", "STS15", quick=True),
        dict(
            name="SciFact",
            type="retrieval",
            root="scifact",
            mteb_name="SciFact",
            identical_to_mteb=True,
            files={"corpus": "corpus.jsonl.gz", "queries": "queries.jsonl", "qrels": "qrels/test.tsv"},
        ),
        dict(
            name="Banking77Classification",
            type="classification",
            root="banking77",
            mteb_name="Banking77Classification",
            files={"train": "train.tsv", "test": "test.tsv"},
            samples_per_label=8,
            quick=True,
            identical_to_mteb=True,
        ),
        dict(
            name="AmazonCounterfactualClassification",
            type="classification",
            root="amazon-counterfactual",
            mteb_name="AmazonCounterfactualClassification",
            files=amazon_files,
            subsets=["en-ext", "en", "de", "ja"],
            eval_splits=["validation", "test"],
            samples_per_label=32,
            quick=True,
            identical_to_mteb=True,
        ),
        dict(
            name="TweetSentimentExtractionClassification",
            type="classification",
            root="tweet-sentiment-extraction",
            mteb_name="TweetSentimentExtractionClassification",
            files={"train": "train.tsv", "test": "test.tsv"},
            samples_per_label=32,
            identical_to_mteb=True,
        ),
        dict(
            name="ImdbClassification",
            type="classification",
            root="imdb",
            mteb_name="ImdbClassification",
            files={"train": "train_subset_2000.tsv.gz", "test": "test.tsv.gz"},
            samples_per_label=8,
            description="train is a 2,000-review subset of MTEB's 25,000",
            identical_to_mteb=True,
        ),
        dict(
            name="MR",
            type="classification",
            root="senteval-mr",
            files={"all": "all.tsv"},
            cv_folds=10,
            samples_per_label=None,
            description="SentEval movie reviews, 10-fold CV",
        ),
        dict(
            name="CR",
            type="classification",
            root="senteval-cr",
            files={"all": "all.tsv"},
            cv_folds=10,
            samples_per_label=None,
            description="SentEval customer reviews, 10-fold CV",
        ),
        dict(
            name="SST2",
            type="classification",
            root="sst2",
            files={"train": "train.tsv.gz", "test": "test.tsv"},
            samples_per_label=None,
            n_experiments=1,
            description="SST-2, full train split",
        ),
        dict(
            name="TwentyNewsgroupsClustering",
            type="clustering",
            root="twentynewsgroups",
            mteb_name="TwentyNewsgroupsClustering",
            files={"test": "test_subjects.tsv"},
            text_column="subject",
            quick=True,
            description="subjects of the test split; MTEB v1 scores 10 sampled subsets",
        ),
        dict(name="AGNewsClustering", type="clustering", root="agnews", files={"test": "test.tsv"}),
        dict(
            name="TwitterURLCorpus",
            type="pair_classification",
            root="twitter-url-corpus",
            mteb_name="TwitterURLCorpus",
            files={"train": "train_tokenized_lowercased.tsv.gz", "test": "test.tsv"},
            merge_roles=["train", "test"],
            identical_to_mteb=True,
            description="train (tokenized, lowercased) + test = MTEB's 51,534 pairs",
        ),
        dict(
            name="TrecQA",
            type="reranking",
            root="trecqa-wang",
            files={"test": "test.jsonl"},
            quick=True,
            description="answer sentence selection (stand-in for MTEB reranking sets)",
        ),
    ]
    for spec in specs:
        spec.setdefault("instruction", INSTRUCTIONS.get(spec["name"], ""))
    return specs


def builtin_tasks(root: Path | None = None) -> dict[str, TaskSpec]:
    """Tasks over the shared data directory (those whose folder exists)."""
    root = root or data_dir()
    tasks: dict[str, TaskSpec] = {}
    if root is None:
        return tasks
    for spec in _builtin_specs():
        folder = Path(root) / spec["root"]
        if folder.is_dir():
            task = TaskSpec(**{**spec, "root": folder})
            tasks[task.name] = task
    return tasks


def load_task_dir(path: str | Path) -> TaskSpec:
    """A user task: a folder in the shared layout with a ``task.json`` or ``task.yaml`` manifest."""
    path = Path(path)
    manifest = next((path / n for n in ("task.json", "task.yaml", "task.yml") if (path / n).is_file()), None)
    if manifest is None:
        raise EmbedlabError(f"{path}: no task.json or task.yaml manifest")
    try:
        if manifest.suffix == ".json":
            raw = json.loads(manifest.read_text())
        else:
            import yaml

            raw = yaml.safe_load(manifest.read_text())
    except Exception as exc:
        raise EmbedlabError(f"{manifest}: cannot be parsed ({exc})") from None
    if not isinstance(raw, dict):
        raise EmbedlabError(f"{manifest}: the manifest must be a mapping")
    try:
        return TaskSpec(**{**raw, "root": path})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(manifest))) from None


def find_task(name: str, available: dict[str, TaskSpec]) -> TaskSpec:
    """A task by name, case-insensitively (``stsbenchmark`` is STSBenchmark); an exact match wins."""
    if name in available:
        return available[name]
    matches = [t for n, t in available.items() if n.casefold() == name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise EmbedlabError(f"task name '{name}' is ambiguous: {', '.join(t.name for t in matches)}")
    raise EmbedlabError(f"unknown task '{name}'; known: {', '.join(available) or 'none (is EMBEDLAB_DATA set?)'}")


def select_tasks(names: str | None, task_dirs: list[str | Path] | None = None) -> list[TaskSpec]:
    """``all``, ``quick`` or a comma-separated list of names (built-in or from ``task_dirs``), matched
    case-insensitively. ``names=None`` selects the tasks of ``task_dirs`` when any are given, else ``quick``."""
    available = builtin_tasks()
    own: list[TaskSpec] = []
    for d in task_dirs or []:
        task = load_task_dir(d)
        available[task.name] = task
        own.append(task)
    if names is None:
        if own:
            return list({t.name: t for t in own}.values())
        names = "quick"
    keyword = names.strip().casefold()
    if keyword == "all":
        return list(available.values())
    if keyword == "quick":
        return [t for t in available.values() if t.quick]
    chosen: list[TaskSpec] = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        task = find_task(name, available)
        if task not in chosen:
            chosen.append(task)
    if not chosen:
        raise EmbedlabError("no task selected")
    return chosen

"""Task selection and manifests: --task-dir without --tasks, unknown file roles, validation before
test (MTEB 1.12's eval_splits order, the test split reported), case-insensitive names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from embedlab.errors import EmbedlabError
from embedlab.eval import evaluators as ev
from embedlab.eval.registry import builtin_tasks, load_task_dir, select_tasks

from ..conftest import run_cli

PAIRS = {
    "validation": [("the cat", "the dog", 4.0), ("a sky", "the sun", 1.0), ("read a book", "i read", 3.0)],
    "test": [
        ("the red car", "a big car", 2.0),
        ("we write", "i write code", 5.0),
        ("my tree", "the bird", 0.5),
        ("a house", "the house", 4.5),
    ],
}


def sts_dir(root, name, splits=("test",), files=None):
    root.mkdir(parents=True, exist_ok=True)
    files = files or {s: f"{s}.tsv" for s in splits}
    (root / "task.json").write_text(json.dumps({"name": name, "type": "sts", "files": files}))
    for split in splits:
        (root / f"{split}.tsv").write_text(
            "sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS[split])
        )
    return root


def test_unknown_file_role_is_an_error_naming_it(tmp_path):
    sts_dir(tmp_path / "t", "mine", files={"tset": "test.tsv"})
    with pytest.raises(EmbedlabError, match="unknown file role 'tset'"):
        load_task_dir(tmp_path / "t")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "task.json").write_text(
        json.dumps({"name": "r", "type": "retrieval", "files": {"corpus": "c", "querys": "q"}})
    )
    with pytest.raises(EmbedlabError, match="unknown file role 'querys'"):
        load_task_dir(tmp_path / "r")
    # every built-in task's roles are known (the registry builds without error)
    assert "STSBenchmark" in builtin_tasks() or not builtin_tasks()


def test_task_dir_without_tasks_selects_the_task_dir_tasks(tmp_path):
    d1, d2 = sts_dir(tmp_path / "a", "first"), sts_dir(tmp_path / "b", "second")
    assert [t.name for t in select_tasks(None, [d1, d2])] == ["first", "second"]
    assert [t.name for t in select_tasks(None)] == [t.name for t in select_tasks("quick")]  # no dirs: quick


def test_task_names_match_case_insensitively(tmp_path):
    d = sts_dir(tmp_path / "a", "MySTS")
    assert [t.name for t in select_tasks("mysts", [d])] == ["MySTS"]
    assert [t.name for t in select_tasks("MYSTS,MySTS", [d])] == ["MySTS"]
    if "STSBenchmark" in builtin_tasks():
        assert [t.name for t in select_tasks("stsbenchmark")] == ["STSBenchmark"]
    with pytest.raises(EmbedlabError, match="unknown task 'nosuch'"):
        select_tasks("nosuch", [d])
    e = sts_dir(tmp_path / "b", "mysts")
    assert [t.name for t in select_tasks("mysts", [d, e])] == ["mysts"]  # an exact match wins
    with pytest.raises(EmbedlabError, match="ambiguous"):
        select_tasks("MYSTS", [d, e])


def fake_encoder(seen):
    def encode(texts, role):
        seen.append(list(texts))
        # a deterministic vector per text, independent of the evaluator
        return np.array([[len(t), t.count("e") + 1.0, sum(map(ord, t)) % 7 + 1.0] for t in texts])

    return encode


def test_validation_is_evaluated_before_test_and_test_is_reported(tmp_path):
    task = load_task_dir(sts_dir(tmp_path / "v", "v", splits=("validation", "test")))
    assert task.evaluation_splits == ["validation", "test"]
    seen: list[list[str]] = []
    scores, per = ev.evaluate_task(task, fake_encoder(seen))
    assert seen[0] == [a for a, _, _ in PAIRS["validation"]]  # validation's sentences are encoded first
    assert seen[2] == [a for a, _, _ in PAIRS["test"]]

    def spearman(split):
        enc = fake_encoder([])
        a, b = enc([p[0] for p in PAIRS[split]], "q"), enc([p[1] for p in PAIRS[split]], "q")
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        return spearmanr([p[2] for p in PAIRS[split]], cos).statistic

    assert scores["cosine_spearman"] == pytest.approx(spearman("test"))  # main score = test split
    assert scores["validation/cosine_spearman"] == pytest.approx(spearman("validation"))
    assert len(per["pred"]) == len(PAIRS["test"])
    only_test = load_task_dir(sts_dir(tmp_path / "t", "t"))
    assert only_test.evaluation_splits == ["test"]


def test_classification_carries_the_rng_from_validation_to_test(tmp_path, monkeypatch):
    root = tmp_path / "c"
    root.mkdir()
    rows = lambda n, off: "text\tlabel\n" + "".join(f"doc {i + off}\t{'xy'[i % 2]}\n" for i in range(n))  # noqa: E731
    (root / "train.tsv").write_text(rows(20, 0))
    (root / "validation.tsv").write_text(rows(6, 100))
    (root / "test.tsv").write_text(rows(8, 200))
    (root / "task.json").write_text(
        json.dumps(
            {
                "name": "c",
                "type": "classification",
                "samples_per_label": 2,
                "n_experiments": 3,
                "files": {"train": "train.tsv", "validation": "validation.tsv", "test": "test.tsv"},
            }
        )
    )
    task = load_task_dir(root)
    seen: list[list[str]] = []
    shuffles: list[list[int]] = []

    class Spy(np.random.RandomState):
        def shuffle(self, x):
            super().shuffle(x)
            shuffles.append(list(x))

    # MTEB: numpy's RNG seeded 42 once per task; per split the index array restarts from arange and is
    # shuffled cumulatively over the experiments; the validation split's 3 experiments come first
    ref = np.random.RandomState(42)
    expected = []
    for _split in ("validation", "test"):
        idx = np.arange(20)
        for _ in range(3):
            ref.shuffle(idx)
            expected.append(idx.tolist())
    monkeypatch.setattr(np.random, "RandomState", Spy)
    scores, _ = ev.evaluate_task(task, fake_encoder(seen))
    assert shuffles == expected
    assert "validation/accuracy" in scores and "accuracy" in scores
    assert seen[0] == [f"doc {i}" for i in range(100, 106)]  # validation's test texts are encoded first


def test_cli_eval_runs_the_task_dir_tasks_by_default_and_matches_names_in_any_case(
    tiny_bert, tmp_path, monkeypatch, capsys
):
    d = sts_dir(tmp_path / "mine", "MySTS", splits=("validation", "test"))
    code, out, err = run_cli(monkeypatch, capsys, "eval", "-m", tiny_bert, "--task-dir", d, "--out", tmp_path / "res")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "res").glob("*.json")] == ["MySTS.json"]  # not the quick set
    result = json.loads((tmp_path / "res" / "MySTS.json").read_text())
    assert result["evaluated_splits"] == ["validation", "test"] and "validation/cosine_spearman" in result["scores"]
    code, _, err = run_cli(
        monkeypatch, capsys, "eval", "-m", tiny_bert, "--tasks", "mysts", "--task-dir", d, "--out", tmp_path / "r2"
    )
    assert code == 0, err
    assert (tmp_path / "r2" / "MySTS.json").is_file()
    code, out, _ = run_cli(monkeypatch, capsys, "tasks", "--task-dir", d)
    assert code == 0 and "MySTS" in out
    bad = sts_dir(tmp_path / "bad", "bad", files={"tests": "test.tsv"})
    code, _, err = run_cli(monkeypatch, capsys, "eval", "-m", tiny_bert, "--task-dir", bad, "--out", tmp_path / "r3")
    assert code == 2 and "unknown file role 'tests'" in err  # an invalid manifest is a usage error

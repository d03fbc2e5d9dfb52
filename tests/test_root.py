"""``import embedlab``: the names a user reaches for first, imported lazily, and ``embedlab.evaluate``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import embedlab


def test_import_embedlab_is_cheap_and_names_resolve_on_first_use():
    code = (
        "import sys, embedlab; heavy = [m for m in ('torch', 'transformers', 'numpy', 'embedlab.models') if m in sys.modules]; "
        "print(heavy); embedlab.Embedder; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_the_root_exports_what_a_user_reaches_for_first():
    from embedlab.eval.suite import evaluate
    from embedlab.index.store import VectorIndex
    from embedlab.models import Embedder
    from embedlab.models.static import distill
    from embedlab.train.config import TrainConfig
    from embedlab.train.trainer import Trainer

    expected = {
        "Embedder": Embedder,
        "Trainer": Trainer,
        "TrainConfig": TrainConfig,
        "evaluate": evaluate,
        "VectorIndex": VectorIndex,
        "distill": distill,
    }
    assert set(embedlab.__all__) == {*expected, "load", "__version__"}
    for name, obj in expected.items():
        assert getattr(embedlab, name) is obj
    assert set(embedlab.__all__) <= set(dir(embedlab))
    assert embedlab.__version__ == json.loads(json.dumps(embedlab.__version__))  # a plain string
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        embedlab.nope  # noqa: B018


def _sts_task(root):
    rows = [
        ("the cat sat", "the cat sat on the mat", 5),
        ("a dog ran", "the sky is blue", 0),
        ("the big car", "the small car", 3),
        ("why is it", "how is it", 2),
        ("red house", "a red house", 4),
    ]
    root.mkdir()
    (root / "test.tsv").write_text(
        "sentence1\tsentence2\tscore\n" + "\n".join(f"{a}\t{b}\t{s}" for a, b, s in rows) + "\n"
    )
    (root / "task.json").write_text(json.dumps({"name": "TinySTS", "type": "sts", "files": {"test": "test.tsv"}}))
    return rows


def test_evaluate_scores_a_task_as_spearman_of_the_cosines(tiny_bert, tmp_path):
    """Independent reference: the model's own vectors, cosines by hand and scipy's Spearman."""
    from scipy.stats import spearmanr

    rows = _sts_task(tmp_path / "tiny-sts")
    model = embedlab.load(str(tiny_bert))
    results = embedlab.evaluate(model, task_dirs=[tmp_path / "tiny-sts"], out_dir=tmp_path / "res", cache=False)
    assert list(results) == ["TinySTS"]
    a, b = model.encode([r[0] for r in rows]), model.encode([r[1] for r in rows])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert results["TinySTS"]["main_score"] == pytest.approx(spearmanr([r[2] for r in rows], cos).statistic, abs=1e-9)
    assert json.loads((tmp_path / "res" / "TinySTS.json").read_text())["main_score"] == results["TinySTS"]["main_score"]
    # a model name, a task given by name among the task_dirs, no out_dir (nothing kept)
    again = embedlab.evaluate(str(tiny_bert), ["tinysts"], task_dirs=[tmp_path / "tiny-sts"], cache=False)
    assert again["TinySTS"]["main_score"] == pytest.approx(results["TinySTS"]["main_score"], abs=1e-9)

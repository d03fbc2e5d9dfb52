"""embedlab.train.config: how stages resolve (hand-worked), and every constrained field refusing the first
bad value and accepting the boundary, with the field named in one line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from embedlab.errors import ConfigError, EmbedlabError, exit_code_of
from embedlab.train.config import STAGE_DEFAULTS, TrainConfig, format_validation_error, load_config, read_yaml
from embedlab.train.data import DataSpec

BASE = {"data": "x.tsv", "output": "out"}


def problems(**raw) -> str:
    with pytest.raises(ValidationError) as info:
        TrainConfig(**raw)
    return format_validation_error(info.value, "c.yaml")


def test_one_stage_takes_the_defaults():
    (stage,) = TrainConfig(**BASE).resolved_stages()
    assert stage.name == "stage1" and stage.data == [DataSpec(source="x.tsv")]
    assert {k: getattr(stage, k) for k in STAGE_DEFAULTS} == {
        "steps": 100,
        "lr": 2e-5,
        "warmup_steps": 10,
        "weight_decay": 0.01,
        "temperature": 0.05,
        "hard_negatives": 0,
        "in_batch_negatives": True,
        "symmetric": False,
        "mask_false_negatives": True,
        "matryoshka_dims": None,
        "matryoshka_weights": None,
        "similarity": "cosine",
        "flops_query_weight": 0.0,
        "flops_document_weight": 0.0,
        "flops_warmup_ratio": 1 / 3,
    }


def test_stages_override_the_top_level_which_overrides_the_defaults():
    cfg = TrainConfig(
        output="out",
        lr=1e-4,
        steps=7,
        in_batch_negatives=True,
        stages=[
            {"data": ["a.tsv", {"source": "b.jsonl", "max_examples": 5}]},
            {"name": "hard", "data": "c.tsv", "steps": 3, "in_batch_negatives": False, "hard_negatives": 2},
        ],
    )
    one, two = cfg.resolved_stages()
    assert (one.name, one.steps, one.lr, one.in_batch_negatives) == ("stage1", 7, 1e-4, True)
    assert [d.source for d in one.data] == ["a.tsv", "b.jsonl"] and one.data[1].max_examples == 5
    assert (two.name, two.steps, two.lr, two.in_batch_negatives, two.hard_negatives) == ("hard", 3, 1e-4, False, 2)
    assert two.temperature == 0.05  # neither level sets it
    assert cfg.total_steps == 7 + 3


def test_matryoshka_dims_are_deduplicated_widest_first():
    cfg = TrainConfig(**BASE, matryoshka_dims=[8, 32, 8, 16])
    assert cfg.resolved_stages()[0].matryoshka_dims == [32, 16, 8]
    TrainConfig(**BASE, matryoshka_dims=[32, 16], matryoshka_weights=[1.0, 0.5])  # one weight per width: fine


@pytest.mark.parametrize(
    ("field", "bad", "ok"),
    [
        ("steps", 0, 1),
        ("lr", 0.0, 1e-9),
        ("warmup_steps", -1, 0),
        ("weight_decay", -0.01, 0.0),
        ("temperature", 0.0, 1e-3),
        ("hard_negatives", -1, 0),
        ("max_length", 0, 1),
        ("checkpoint_every", 0, 1),
        ("keep_checkpoints", 0, 1),
        ("log_every", 0, 1),
        ("memory_limit_gb", 0.0, 0.5),
        ("batch_size", 1, 2),
        ("grad_accumulation", 0, 1),
        ("micro_batch_size", 0, 1),
        ("precision", "fp8", "bf16"),
        ("device", "tpu", "cpu"),
        ("attention", "sideways", "bidirectional"),
        ("padding_side", "middle", "left"),
        ("head_preset", "huge", "paper"),
    ],
)
def test_each_constrained_field_refuses_the_bad_value_and_takes_the_boundary(field, bad, ok):
    message = problems(**BASE, **{field: bad})
    assert message.startswith(f"c.yaml: field '{field}': ") and "\n" not in message and message.count("field '") == 1
    assert getattr(TrainConfig(**BASE, **{field: ok}), field) == ok


@pytest.mark.parametrize(
    ("lora", "field"),
    [
        ({"r": 0}, "lora.r"),
        ({"alpha": 0}, "lora.alpha"),
        ({"dropout": 1.0}, "lora.dropout"),
        ({"rank": 8}, "lora.rank"),
    ],
)
def test_lora_settings(lora, field):
    assert problems(**BASE, lora=lora).startswith(f"c.yaml: field '{field}': ")
    assert TrainConfig(**BASE, lora={"dropout": 0.0}).lora.r == 16


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"output": "o"}, "field 'config': give either data (one stage) or stages (a list), not both and not neither"),
        ({"output": "o", "data": "x", "stages": [{"data": "y"}]}, "not both and not neither"),
        ({"output": "o", "stages": []}, "stages must list at least one stage"),
        ({"output": "o", "data": []}, "data must name at least one dataset"),
        ({**BASE, "batch_size": 4, "micro_batch_size": 8}, "micro_batch_size (8) must not exceed batch_size (4)"),
        ({**BASE, "matryoshka_dims": []}, "matryoshka_dims must list at least one width"),
        (
            {**BASE, "matryoshka_dims": [8, -2]},
            "field 'matryoshka_dims': matryoshka_dims[1] must be a positive integer",
        ),
        ({**BASE, "matryoshka_dims": [8, 4], "matryoshka_weights": [1.0]}, "one weight per matryoshka_dims entry"),
        ({**BASE, "instruction_template": "{task} only"}, "must contain {text}"),
        ({**BASE, "instruction_template": "{text} {oops}"}, "is not a valid template"),
        ({"data": "x"}, "field 'output': Field required"),
        ({**BASE, "stages": None, "stepz": 3}, "field 'stepz': Extra inputs are not permitted"),
    ],
)
def test_cross_field_rules(raw, expected):
    message = problems(**raw)
    assert expected in message and "Value error, " not in message, message


def test_several_problems_are_one_line_joined():
    message = problems(output="o", data="x", steps=0, lr=-1)
    assert message == (
        "c.yaml: field 'steps': Input should be greater than 0; field 'lr': Input should be greater than 0"
    )


def test_micro_batch_equal_to_the_batch_is_allowed():
    assert TrainConfig(**BASE, batch_size=4, micro_batch_size=4).micro_batch_size == 4


def test_load_config_reads_yaml_and_applies_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.tsv\noutput: from-file\nsteps: 5\n")
    cfg = load_config(path, output="from-flag", steps=None)  # None: the flag was not given
    assert (cfg.output, cfg.steps) == ("from-flag", 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "config file not found"), ("a: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "must be a mapping")],
)
def test_unreadable_config_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(EmbedlabError, match=message):
        read_yaml(path)
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml(tmp_path / "empty.yaml") == {}


def test_an_invalid_config_file_is_one_line_naming_the_file_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.tsv\noutput: out\nbatch_size: 1\n")
    with pytest.raises(EmbedlabError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: field 'batch_size': batch_size must be an integer >= 2; got 1"


def test_an_invalid_config_file_is_a_config_error_exit_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x.tsv\noutput: out\nlr: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert exit_code_of(info.value) == 2

"""embedlab.experiments.design: ``pooling/attention`` names, parsed and printed as exact inverses, refused
as one-line ConfigErrors; the paper's five designs as Tang & Yang (2024, Table 1) number them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from embedlab.errors import ConfigError, EmbedlabError, exit_code_of
from embedlab.experiments.design import PAPER_MODELS, Design

# by hand: the heads the pooling registry offers, and which of them carry parameters of their own
POOLINGS = {
    "cls": False,
    "mean": False,
    "weighted_mean": False,
    "last_token": False,
    "latent_attention": True,
    "last_layer": True,
    "multi_layer": True,
}


def test_design_parse_and_paper_models():
    for text in ("multi_layer/bidirectional", "last_token/causal", "last_layer/causal"):
        assert str(Design.parse(text)) == text
    assert [str(d) for d in PAPER_MODELS.values()] == [
        "last_token/causal",
        "last_layer/causal",
        "multi_layer/causal",
        "last_layer/bidirectional",
        "multi_layer/bidirectional",
    ]
    with pytest.raises(EmbedlabError, match="pooling/attention"):
        Design.parse("mean-causal")
    with pytest.raises(EmbedlabError, match="unknown pooling"):
        Design.parse("max/causal")


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_every_design_round_trips(pooling, attention):
    text = f"{pooling}/{attention}"
    design = Design.parse(text)
    assert (design.pooling, design.attention) == (pooling, attention)
    assert str(design) == text and design.dir_name == f"{pooling}-{attention}"
    assert Design.parse(design) is design and Design.parse(str(design)) == design
    assert hash(Design.parse(text)) == hash(design)  # frozen: usable as a dict key
    assert design.trainable_head == POOLINGS[pooling]


def test_trainable_heads_are_the_ones_with_parameters():
    from embedlab.models.pooling import build_head

    for name, trainable in POOLINGS.items():
        opts = {"num_latents": 2, "num_heads": 2} if trainable else {}
        head = build_head(name, 8, num_layers=2, attention="causal", **opts)
        assert (
            (sum(p.numel() for p in head.parameters()) > 0)
            == trainable
            == Design.parse(f"{name}/causal").trainable_head
        )


def test_paper_numbers_and_labels():
    assert {n: (d.pooling, d.attention) for n, d in PAPER_MODELS.items()} == {
        1: ("last_token", "causal"),
        2: ("last_layer", "causal"),
        3: ("multi_layer", "causal"),
        4: ("last_layer", "bidirectional"),
        5: ("multi_layer", "bidirectional"),
    }
    assert Design.parse("multi_layer/causal").paper_model == 3
    assert Design.parse("multi_layer/causal").label == "multi_layer/causal (Model 3)"
    assert Design.parse("last_token/bidirectional").paper_model is None
    assert Design.parse("mean/causal").label == "mean/causal"


@pytest.mark.parametrize(
    "text",
    ["mean", "mean/", "mean/Causal", "mean/causal/x", "mean-causal", "", "causal/mean", "mean / causal", "/causal"],
)
def test_malformed_names_are_config_errors(text):
    with pytest.raises(ConfigError) as info:
        Design.parse(text)
    assert exit_code_of(info.value) == 2 and "\n" not in str(info.value) and repr(text) in str(info.value)


def test_an_unknown_pooling_lists_the_choices():
    with pytest.raises(
        ConfigError, match=r"unknown pooling 'max'; choose from cls, mean, .*multi_layer, splade, dupmae$"
    ):
        Design.parse("max/causal")


def test_the_message_has_no_pydantic_prefix():
    with pytest.raises(ConfigError) as info:
        Design.parse("max/causal")
    assert "Value error" not in str(info.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(ValidationError):
        Design(pooling="mean", attention="sideways")
    with pytest.raises(ValidationError):
        Design(pooling="mean", attention="causal", lora=True)  # extra fields forbidden
    design = Design(pooling="mean", attention="causal")
    with pytest.raises(ValidationError):
        design.pooling = "cls"  # frozen

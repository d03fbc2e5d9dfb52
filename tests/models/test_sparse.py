"""The SPLADE head: hand-computed pooling, padding, the typed sparse output, the saved layout and parity with
sentence-transformers' SparseEncoder, the decoder (tied LM head) case, and what it refuses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from embedlab.errors import ConfigError, PoolingError
from embedlab.models import Embedder, SpladeHead
from embedlab.models.sparse import sparse_slots
from embedlab.vectors import SparseEmbeddings

TEXTS = ["the cat sat", "a dog ran on the mat and the cat sat", "the red car", ""]


def test_pool_is_the_max_of_log1p_relu_over_real_tokens_only():
    head = SpladeHead(4)
    head.mode, head.mlm, head.vocab_size = "mlm", nn.Identity(), 3  # the "logits" are the token states themselves
    logits = torch.tensor(
        [
            [[1.0, -2.0, 0.5], [3.0, 0.0, -1.0], [100.0, 100.0, 100.0]],  # the last position is padding
            [[-1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        ]
    )
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = head.pool({"token_embeddings": logits, "attention_mask": mask})
    expected = [[math.log(4.0), 0.0, math.log(1.5)], [0.0, math.log(3.0), 0.0]]  # by hand
    assert torch.allclose(out, torch.tensor(expected), atol=1e-7)
    head.pooling_strategy = "sum"  # SPLADE v1
    out = head.pool({"token_embeddings": logits, "attention_mask": mask})
    assert torch.allclose(out[0], torch.tensor([math.log(2.0) + math.log(4.0), 0.0, math.log(1.5)]), atol=1e-6)


def test_sparse_slots_keep_every_nonzero_and_mark_the_rest():
    dense = torch.tensor([[0.0, 2.0, 0.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    slots = sparse_slots(dense)
    assert slots["vocab_size"] == 4 and slots["indices"].shape == (2, 2)
    assert slots["indices"][0].tolist() == [1, 3] and slots["values"][0].tolist() == [2.0, 1.0]
    assert slots["indices"][1].tolist() == [0, -1]


@pytest.fixture(scope="module")
def splade(tiny_bert):
    """The tiny random BERT with a SPLADE head whose bias is zeroed: its fresh -4‖e‖ bias leaves a random
    model's vectors empty, which would make the comparisons below vacuous."""
    emb = Embedder.from_pretrained(tiny_bert, pooling="splade")
    with torch.no_grad():
        emb.head.mlm.predictions.bias.zero_()
    assert (emb.encode(TEXTS) > 0).sum(axis=1).min() > 3
    return emb


def test_the_chain_is_backbone_then_splade_without_normalisation(splade):
    assert [m.kind for m in splade.chain] == ["transformer", "splade"]
    assert splade.output_kind == "sparse" and splade.output_dim == splade.tokenizer.vocab_size
    # the decoder is the word-embedding matrix itself (tied), not a copy
    assert splade.head.mlm.predictions.decoder.weight is splade.backbone.model.get_input_embeddings().weight


def test_padding_does_not_change_a_vector(splade):
    alone = np.stack([splade.encode([t]) for t in TEXTS[:3]])[:, 0]
    batched = splade.encode(TEXTS[:3])  # padded to the longest text
    assert np.allclose(alone, batched, atol=1e-5)
    assert (batched >= 0).all()


def test_output_sparse_equals_the_dense_vectors_nonzeros_in_input_order(splade):
    dense = splade.encode(TEXTS)
    sparse = splade.encode(TEXTS, output="sparse", max_batch_size=2)  # several batches, length-sorted
    assert isinstance(sparse, SparseEmbeddings) and len(sparse) == len(TEXTS)
    a = sparse.to_arrays()
    rebuilt = np.zeros_like(dense)
    for i in range(len(TEXTS)):
        lo, hi = a["indptr"][i], a["indptr"][i + 1]
        rebuilt[i, a["indices"][lo:hi]] = a["values"][lo:hi]
    assert np.allclose(rebuilt, dense, atol=1e-6)
    assert int(a["vocab_size"]) == dense.shape[1]


def test_saved_model_loads_in_sentence_transformers_sparse_encoder_with_the_same_vectors(splade, tmp_path):
    from sentence_transformers import SparseEncoder

    path = tmp_path / "splade"
    splade.save(path)
    modules = json.loads((path / "modules.json").read_text())
    assert modules[1]["type"] == "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"
    assert json.loads((path / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    assert json.loads((path / "config_sentence_transformers.json").read_text())["model_type"] == "SparseEncoder"
    ours = splade.encode(TEXTS)
    st = SparseEncoder(str(path), device="cpu")
    theirs = st.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
    assert theirs.shape == ours.shape and np.abs(theirs - ours).max() <= 1e-5
    again = Embedder.from_pretrained(path)  # the MLM head comes back from the root checkpoint
    assert [m.kind for m in again.chain] == ["transformer", "splade"]
    assert np.abs(again.encode(TEXTS) - ours).max() <= 1e-6


def test_a_sentence_transformers_splade_model_loads_in_embedlab(tiny_bert, tmp_path):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    torch.manual_seed(1)
    st = SparseEncoder(modules=[Transformer(str(tiny_bert), transformer_task="fill-mask"), SpladePooling("max")])
    st.save(str(tmp_path / "st"))
    theirs = st.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
    ours = Embedder.from_pretrained(tmp_path / "st").encode(TEXTS)
    assert np.abs(theirs - ours).max() <= 1e-5


def test_on_a_decoder_the_tied_lm_head_gives_the_logits_and_specials_are_masked(tiny_llama):
    emb = Embedder.from_pretrained(tiny_llama, pooling="splade")
    assert emb.head.mode == "tied" and emb.output_kind == "sparse"
    ids = emb.tokenizer(["the cat sat"])["input_ids"][0]
    with torch.inference_mode():
        h = emb.backbone.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        logits = h @ emb.backbone.model.get_input_embeddings().weight.T  # the tied head by hand
        expected = torch.log1p(torch.relu(logits)).amax(dim=0)
        expected[emb.head.masked_ids] = 0
    got = emb.encode(["the cat sat"], output="sparse").to_arrays()
    dense = np.zeros(emb.output_dim, dtype=np.float32)
    dense[got["indices"]] = got["values"]
    assert np.allclose(dense, expected.numpy(), atol=1e-5)
    assert emb.head.masked_ids.numel() and not dense[emb.head.masked_ids.numpy()].any()


def test_what_a_sparse_head_refuses(tiny_bert, splade):
    with pytest.raises(ConfigError, match="normalize and truncate_dim do not apply"):
        Embedder.from_pretrained(tiny_bert, pooling="splade", truncate_dim=8)
    with pytest.raises(ConfigError, match="gives sparse ones"):
        splade.encode(TEXTS, output="dense")
    with pytest.raises(ConfigError, match="ends the chain"):
        from embedlab.models import Normalize

        Embedder([splade.backbone, splade.head, Normalize()])
    with pytest.raises(ConfigError, match="pooling_strategy"):
        SpladeHead(8, pooling_strategy="mean")
    with pytest.raises(PoolingError, match="not bound"):
        SpladeHead(8).embedding_dim  # noqa: B018


def test_a_fresh_head_starts_from_the_identity_transform_and_the_tied_surrogate(tiny_bert):
    splade = Embedder.from_pretrained(tiny_bert, pooling="splade")
    mlm = splade.head.mlm.predictions
    assert torch.equal(mlm.transform.dense.weight, torch.eye(mlm.transform.dense.weight.shape[0]))
    rows = splade.backbone.model.get_input_embeddings().weight
    assert not mlm.transform.dense.bias.any() and torch.allclose(mlm.bias, -4.0 * rows.norm(dim=1))
    h = torch.randn(2, 3, mlm.transform.dense.weight.shape[0])
    by_hand = mlm.transform.LayerNorm(torch.nn.functional.gelu(h)) @ rows.T - 4.0 * rows.norm(dim=1)  # b_j = -4‖e_j‖
    with torch.no_grad():
        assert torch.allclose(splade.head.mlm(h), by_hand, atol=1e-5)


def test_dupmae_is_the_reduced_cls_plus_the_top_k_of_the_raw_ordinary_token_logits_by_hand():
    from embedlab.models.sparse import DupMAEHead

    head = DupMAEHead(4, dense_dim=4, top_k=2)
    head.mode, head.mlm, head.vocab_size = "mlm", nn.Identity(), 8  # logits = the states; V = 4
    h = torch.tensor(
        [
            [[9.0, 9.0, 9.0, 9.0], [1.0, -2.0, 0.5, -3.0], [-1.0, -5.0, 2.0, -4.0], [50.0, 50.0, 50.0, 50.0]],
        ]
    )  # position 0 is [CLS], position 3 padding
    mask = torch.tensor([[1, 1, 1, 0]])
    out = head.pool({"token_embeddings": h, "attention_mask": mask})
    # dense: W·h_cls with W = I; sparse: max over positions 1..2 = [1, -2, 2, -3] (raw, negative kept); top-2: 2, 1
    assert out.tolist() == [[9.0, 9.0, 9.0, 9.0, 1.0, 0.0, 2.0, 0.0]]
    head.eval()
    slots = head({"token_embeddings": h, "attention_mask": mask})["sparse_embedding"]
    pairs = sorted(zip(slots["indices"][0].tolist(), slots["values"][0].tolist()))
    assert pairs == [(0, 9.0), (1, 9.0), (2, 9.0), (3, 9.0), (4, 1.0), (6, 2.0)] and slots["vocab_size"] == 8


def test_dupmae_on_a_tiny_bert_saves_loads_and_refuses_a_decoder(tiny_bert, tiny_llama, tmp_path):
    emb = Embedder.from_pretrained(tiny_bert, pooling="dupmae", pooling_options={"dense_dim": 16, "top_k": 5})
    v = emb.tokenizer.vocab_size
    assert emb.output_dim == 16 + v and emb.output_kind == "sparse"
    sparse = emb.encode(TEXTS, output="sparse")
    assert all(len(sparse.row(i)[0]) <= 16 + 5 for i in range(len(TEXTS)))
    assert np.allclose(sparse.to_dense(), emb.encode(TEXTS), atol=1e-5)
    vocab = emb.head.vocabulary(emb.tokenizer)
    assert vocab[0] == "[dense:0]" and vocab[16:] == emb.tokenizer.convert_ids_to_tokens(list(range(v)))
    emb.save(tmp_path / "d")
    again = Embedder.from_pretrained(tmp_path / "d")
    assert [m.kind for m in again.chain] == ["transformer", "dupmae"]
    assert np.abs(again.encode(TEXTS) - emb.encode(TEXTS)).max() <= 1e-5
    with pytest.raises(PoolingError, match="needs an encoder's"):
        Embedder.from_pretrained(tiny_llama, pooling="dupmae")

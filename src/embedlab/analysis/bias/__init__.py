"""Bias in embeddings: WEAT and SEAT with exact permutation tests, the bias subspace, DirectBias,
hard debiasing (neutralise, equalise) and the Gonen & Goldberg clustering check.

Implemented from the papers (no code copied):

* WEAT (Caliskan, Bryson & Narayanan, *Science* 2017). For target sets X, Y (equal size) and
  attribute sets A, B: ``s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)``; the statistic
  ``S = sum_x s(x) - sum_y s(y)``; the effect size ``d = (mean_x s - mean_y s) / std_{w in X∪Y} s(w)``
  (sample standard deviation, ``ddof=1``). The one-sided p-value is the share of the equal-size
  partitions (X_i, Y_i) of X ∪ Y whose statistic is at least the observed one: every partition
  when there are at most ``max_exact`` (10⁵) of them, otherwise ``n_random`` (10⁵) seeded random
  permutations *without replacement* of the pooled set, with the (b + 1) / (m + 1) estimator so a
  sampled p is never 0. Caliskan writes ``>``; we count ``>=`` (the observed partition is one of
  the partitions, so an exact p is never 0 either).
* SEAT (May et al., NAACL 2019): WEAT over sentence vectors, each word slotted into
  "semantically bleached" templates; each sentence is one member of its set.
* The bias subspace, DirectBias_c, neutralise and equalise (Bolukbasi et al., NeurIPS 2016).
* The clustering check of Gonen & Goldberg (NAACL 2019, *Lipstick on a Pig*).

Anything that embeds is an *encoder*: an :class:`~embedlab.models.Embedder`, a :class:`StaticVectors`
(word vectors from a word2vec/GloVe text file), or any object with ``encode(list[str]) -> array``.
Static vectors have a vocabulary; words missing from it are reported and skipped.

Modules: :mod:`~embedlab.analysis.bias.data` (word lists and tests), :mod:`~embedlab.analysis.bias.encoders`,
:mod:`~embedlab.analysis.bias.weat` (statistics), :mod:`~embedlab.analysis.bias.subspace` (subspace and debiasing),
:mod:`~embedlab.analysis.bias.clustering` (Gonen & Goldberg), :mod:`~embedlab.analysis.bias.report`.
"""

from __future__ import annotations

from embedlab.analysis.bias.clustering import (
    ClusteringCheck,
    cluster_alignment,
    gender_direction,
    gonen_goldberg,
    most_biased,
    vocabulary_words,
)
from embedlab.analysis.bias.data import (
    DEBIASWE_FILES,
    KINDS,
    MAX_EXACT,
    N_RANDOM,
    SET_KEYS,
    BiasTest,
    WordSet,
    builtin_tests,
    check_sizes,
    debiaswe_lists,
    load_tests,
    make_test,
    phrase,
    read_pairs,
    seat_sentences,
    seat_templates,
    select_tests,
)
from embedlab.analysis.bias.encoders import StaticVectors, encode, known_words
from embedlab.analysis.bias.report import (
    STATIC_SUFFIXES,
    direction_report,
    neutral_words,
    open_encoder,
    oriented,
    plot_effect_sizes,
    results_table,
)
from embedlab.analysis.bias.subspace import (
    HardDebiasReport,
    Subspace,
    bias_subspace,
    direct_bias,
    equalise,
    expand_case,
    hard_debias,
    indirect_bias,
    neutralise,
    subspace_cosines,
    subspace_from_pairs,
)
from embedlab.analysis.bias.weat import (
    MemoEncoder,
    PermutationResult,
    WeatResult,
    associations,
    effect_size,
    n_partitions,
    permutation_p,
    run_test,
    run_tests,
    unit,
    weat_from_vectors,
    weat_statistic,
)

__all__ = [
    "MAX_EXACT",
    "N_RANDOM",
    "SET_KEYS",
    "KINDS",
    "DEBIASWE_FILES",
    "WordSet",
    "BiasTest",
    "make_test",
    "check_sizes",
    "builtin_tests",
    "seat_templates",
    "load_tests",
    "select_tests",
    "seat_sentences",
    "debiaswe_lists",
    "read_pairs",
    "phrase",
    "StaticVectors",
    "encode",
    "known_words",
    "unit",
    "associations",
    "weat_statistic",
    "effect_size",
    "n_partitions",
    "PermutationResult",
    "permutation_p",
    "WeatResult",
    "weat_from_vectors",
    "MemoEncoder",
    "run_test",
    "run_tests",
    "Subspace",
    "subspace_from_pairs",
    "bias_subspace",
    "subspace_cosines",
    "direct_bias",
    "indirect_bias",
    "neutralise",
    "equalise",
    "expand_case",
    "HardDebiasReport",
    "hard_debias",
    "ClusteringCheck",
    "cluster_alignment",
    "gender_direction",
    "gonen_goldberg",
    "most_biased",
    "vocabulary_words",
    "STATIC_SUFFIXES",
    "open_encoder",
    "neutral_words",
    "direction_report",
    "oriented",
    "results_table",
    "plot_effect_sizes",
]

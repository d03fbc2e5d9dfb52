"""Analyses of embedders: bias (WEAT, SEAT, the bias subspace, hard debiasing)."""

from embedlab.analysis.bias import (
    BiasTest,
    StaticVectors,
    Subspace,
    WeatResult,
    bias_subspace,
    builtin_tests,
    direct_bias,
    equalise,
    gonen_goldberg,
    hard_debias,
    load_tests,
    neutralise,
    permutation_p,
    run_test,
    run_tests,
    select_tests,
    weat_from_vectors,
)

__all__ = [
    "BiasTest",
    "StaticVectors",
    "Subspace",
    "WeatResult",
    "bias_subspace",
    "builtin_tests",
    "direct_bias",
    "equalise",
    "gonen_goldberg",
    "hard_debias",
    "load_tests",
    "neutralise",
    "permutation_p",
    "run_test",
    "run_tests",
    "select_tests",
    "weat_from_vectors",
]
from embedlab.analysis.goalex import ClusterResult, GoalEx, GoalExConfig, cluster_scores, kmeans_clusters, select_ilp  # noqa: E402

__all__ += ["ClusterResult", "GoalEx", "GoalExConfig", "cluster_scores", "kmeans_clusters", "select_ilp"]

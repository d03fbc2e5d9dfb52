"""Evaluation: task registry over the shared data, six MTEB-style task types, significance.

Work in progress (issue 3): the evaluators, registry, cache and significance tests exist and are
tested; the CLI (`embedlab tasks/eval/compare`), the reproduction table and the bench are not done.
"""

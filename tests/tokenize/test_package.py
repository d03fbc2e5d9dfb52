"""``embedlab.tokenize`` is a leaf: importing it loads only the shared tokenisation, not the quality
report (or torch); the report's names still resolve on first use."""

from __future__ import annotations

import subprocess
import sys


def test_importing_tokenize_loads_only_the_shared_tokenisation():
    code = (
        "import sys, embedlab.tokenize as t; "
        "print(sorted(m for m in sys.modules if m.startswith('embedlab'))); print('torch' in sys.modules); "
        "t.tokenizer_metrics, t.TurkishLexicon, t.load_tokenizer; print('embedlab.tokenize.metrics' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    loaded = eval(out[0])  # noqa: S307 - our own subprocess's print of a list of module names
    assert "embedlab.tokenize.prompted" in loaded
    assert not [
        m
        for m in loaded
        if m.startswith(("embedlab.tokenize.", "embedlab.models", "embedlab.vocab"))
        and m != "embedlab.tokenize.prompted"
    ]
    assert out[1] == "False" and out[2] == "True"

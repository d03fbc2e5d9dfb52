"""``python -m embedlab.cli``: the same entry point as the ``embedlab`` script."""

from embedlab.cli import main

main()

"""``python -m dbosify.cli``: the ``dbosify`` command without its console script."""

from dbosify.cli import main

main()

"""The ``dbosify`` command line: ``dbosify worker``, ``promote``, ``runs``, ``show``, ``start``,
``signal``, ``query``, ``update``, ``cancel``, ``terminate``, ``result`` and ``schedule``.

Run ``dbosify --help`` or ``dbosify COMMAND --help``. :func:`main` is the console script;
:data:`cli` is the click group (for ``click.testing.CliRunner``).
"""

from dbosify.cli._main import cli, main

__all__ = ["cli", "main"]

"""dbosify in a notebook: the plain Python API under the magics and widgets.

Everything here is usable without IPython: the magics (``dbosify.magics``) and widgets
(``dbosify.widgets``) are thin layers over these functions. pandas is imported only by the
functions that return DataFrames.
"""

from dbosify.notebook._loop import BackgroundLoop, background_loop, run_sync

__all__ = ["BackgroundLoop", "background_loop", "run_sync"]

"""Every temporalio module under dbosify's name: ``dbosify.envconfig`` is ``temporalio.envconfig``.

Temporal programs import far more of temporalio than the modules dbosify has to change
(``temporalio.envconfig``, ``temporalio.api.common.v1``, ``temporalio.contrib.pydantic``,
``temporalio.runtime`` ...). So that such a program needs only ``temporalio`` replaced by
``dbosify``, a finder at the front of ``sys.meta_path`` answers ``import dbosify.X`` with the
very module object ``temporalio.X`` whenever dbosify has no module ``X`` of its own:

- dbosify's own modules win (``dbosify.client``, ``dbosify.worker``, ``dbosify.testing``,
  ``dbosify.service``, ``dbosify.workflow`` ...), and so do its private ones
  (``dbosify.client._client``); a module of temporalio's *inside* one of dbosify's packages
  (``dbosify.worker.workflow_sandbox``, ``dbosify.client._impl``) is temporalio's.
- dbosify's top-level private modules (``dbosify._runtime`` ...) are never aliased.
- Importing the alias imports temporalio's module, so it fails exactly as temporalio's does
  (``dbosify.contrib.opentelemetry`` without ``opentelemetry`` installed raises the same
  ``ModuleNotFoundError``).

Nothing is imported until an aliased module is: ``import dbosify`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

_OURS = "dbosify."
_THEIRS = "temporalio."
_MARK = "_dbosify_temporalio_aliases"


def _is_alias(module: ModuleType | None, name: str) -> bool:
    """Whether ``module``, imported as ``name``, is one of temporalio's under an alias."""
    return module is not None and getattr(module, "__name__", name) != name


class _AliasLoader(importlib.abc.Loader):
    """Loads ``dbosify.X`` as the module object ``temporalio.X`` itself (no copy)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # Raises exactly what importing temporalio's module raises.
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamps the alias's spec on the module it is given (it always sets
        # __spec__): give temporalio's module its own back, so reloads and pickling work.
        if self.own_spec is not None:
            module.__spec__ = self.own_spec


class TemporalioAliases(importlib.abc.MetaPathFinder):
    """The meta-path finder behind the aliases (see the module docstring)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_OURS):
            return None
        parent_name, _, child = fullname.rpartition(".")
        if parent_name == "dbosify" and child.startswith("_"):
            return None  # dbosify's private engine, never temporalio's.
        parent = sys.modules.get(parent_name)
        if parent is None:
            return None
        if not _is_alias(parent, parent_name):
            # One of dbosify's own packages: its own module of that name wins.
            search = getattr(parent, "__path__", None)
            if search is None or importlib.machinery.PathFinder.find_spec(
                    fullname, list(search)) is not None:
                return None
        theirs = _THEIRS + fullname[len(_OURS):]
        try:
            spec = importlib.util.find_spec(theirs)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(theirs),
            is_package=spec.submodule_search_locations is not None)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per interpreter, even if dbosify is
    imported again, e.g. by temporalio's workflow sandbox)."""
    if not any(getattr(finder, _MARK, False) for finder in sys.meta_path):
        finder = TemporalioAliases()
        setattr(finder, _MARK, True)
        sys.meta_path.insert(0, finder)

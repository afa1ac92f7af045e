"""dbosify's Temporal surface is temporalio's own: export lists pinned, identities, headless imports.

DESIGN §1 and §2: ``dbosify.{activity,workflow,common,exceptions,converter,testing,client,worker,
service}`` keep temporalio's names and re-export temporalio's very objects (except the few classes
dbosify must replace, recorded below with the reason), so a Temporal program changes only its
imports; every other temporalio module imports under dbosify's name as temporalio's own module.
These tests fail when temporalio gains or loses a public name (an upgrade must be looked at), when
dbosify drops or adds one, or when an object is not temporalio's own.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import temporalio.activity
import temporalio.api.common.v1
import temporalio.common
import temporalio.converter
import temporalio.exceptions
import temporalio.testing
import temporalio.workflow

import dbosify
import dbosify.activity
import dbosify.common
import dbosify.converter
import dbosify.exceptions
import dbosify.testing
import dbosify.workflow

REPO_ROOT = Path(__file__).resolve().parents[1]

# Public modules that mirror a temporalio module of the same name.
MIRRORED = ("activity", "workflow", "common", "exceptions", "converter", "testing", "client",
            "worker", "service")

# Public temporalio names that dbosify deliberately does not export, with the reason. A gap must be
# a real public name of temporalio's module (a stale entry fails) and must not be exported.
GAPS: dict[str, dict[str, str]] = {}
# (TimeSkipper and TimeSkippingConfig, once gaps, are temporalio's own classes: the database
# answers the per-workflow time-skipping RPCs they call.)

# Public temporalio names dbosify replaces with its own subclass (same API, on a database), with the
# reason.
OWN: dict[str, dict[str, str]] = {
    "testing": {
        "WorkflowEnvironment": (
            "temporalio's starts or connects to a Temporal server; dbosify's start_local() opens "
            "an embedded database instead"
        ),
    },
    "client": {
        "Client": (
            "temporalio's connect() dials a Temporal server; dbosify's opens a database (a URL, "
            "or the configured one for a Temporal address), and the client is an async context "
            "manager with close(); everything else is temporalio's code"
        ),
    },
    "service": {
        "ServiceClient": (
            "temporalio's connect() opens a gRPC connection; dbosify's opens the database"
        ),
    },
}

# Replaced by a class of dbosify's own that is no subclass of temporalio's, with the reason.
STANDALONE: dict[str, dict[str, str]] = {
    "worker": {
        "Worker": (
            "temporalio's Worker polls a Temporal server through the Rust Core; dbosify's takes "
            "the same arguments (its first may also be a database URL, a DBOS config dict or "
            "None) and runs workflows and activities on the database"
        ),
    },
}

# Names dbosify exports beyond temporalio's module, with the reason.
EXTRAS: dict[str, dict[str, str]] = {
    "converter": {
        "Payload": (
            "temporalio.api.common.v1.Payload, which converters and codecs take and return; the "
            "earlier dbosify exported it here and programs written for it import it from here"
        ),
    },
}

# What a headless worker must never import (DESIGN §1: only the notebook layer may).
NOTEBOOK_ONLY = ("IPython", "ipywidgets", "pandas")

# The light surface: importing these must not load the notebook libraries, nor DBOS or dbosify's
# client, worker and engine.
LIGHT_MODULES = (
    "dbosify",
    "dbosify.workflow",
    "dbosify.activity",
    "dbosify.common",
    "dbosify.exceptions",
    "dbosify.converter",
    "dbosify.service",
)
ENGINE_MODULES = (
    "dbos",
    "dbosify.client",
    "dbosify.worker",
    "dbosify._runtime",
    "dbosify._service",
    "dbosify._store",
)
# Written by others; each must pass the headless check once it exists.
LATER_MODULES = ("dbosify.client", "dbosify.worker")


def _defined_names(body: list[ast.stmt]) -> set[str]:
    """Names a module body binds itself: defs, classes, assignments, explicit ``X as X`` re-exports.

    Plain imports (``Any``, ``dataclass``, ``temporalio``...) are not the module's public API.
    ``if``/``try`` blocks are followed, except ``if TYPE_CHECKING:``, which binds nothing at run time.
    """
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname for a in node.names if a.asname and a.asname == a.name)
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                names |= _defined_names(node.body) | _defined_names(node.orelse)
        elif isinstance(node, ast.Try):
            names |= _defined_names(node.body) | _defined_names(node.orelse)
            names |= _defined_names(node.finalbody)
            for handler in node.handlers:
                names |= _defined_names(handler.body)
    return names


def temporalio_public_names(module: ModuleType) -> set[str]:
    """The public names of a temporalio module.

    Its ``__all__`` when it has one (minus underscore names, which temporalio.workflow lists for
    its own worker), else the names its source binds itself (see ``_defined_names``).
    """
    declared: list[str] | None = getattr(module, "__all__", None)
    if declared is not None:
        names = set(declared)
    else:
        names = _defined_names(_parsed(module.__name__))
    return {n for n in names if not n.startswith("_")}


@functools.cache
def _parsed(name: str) -> list[ast.stmt]:
    return ast.parse(inspect.getsource(importlib.import_module(name))).body


# Parsed at collection: CPython 3.11's ast.parse can fail with "AST constructor recursion depth
# mismatch" once other tests in the session have run engine threads (a CPython bug, not ours).
for _name in ("activity", "workflow", "common", "exceptions", "converter", "testing", "client",
              "worker", "service"):
    _parsed(f"temporalio.{_name}")


def _modules(name: str) -> tuple[ModuleType, ModuleType]:
    return importlib.import_module(f"dbosify.{name}"), importlib.import_module(f"temporalio.{name}")


def test_public_name_rule() -> None:
    """The rule finds what each module defines and skips what it merely imports."""
    assert {"ApplicationError", "is_cancelled_exception"} <= temporalio_public_names(
        temporalio.exceptions
    )
    assert {"Any", "asyncio", "temporalio"}.isdisjoint(
        temporalio_public_names(temporalio.exceptions)
    )
    activity_names = temporalio_public_names(temporalio.activity)
    assert {"defn", "heartbeat", "info", "Info", "logger", "wait_for_cancelled"} <= activity_names
    assert {"Client", "TYPE_CHECKING", "dataclass", "contextvars"}.isdisjoint(activity_names)
    workflow_names = temporalio_public_names(temporalio.workflow)
    assert {"unsafe", "logger", "NondeterminismError", "ActivityConfig"} <= workflow_names
    assert "_Definition" not in workflow_names


@pytest.mark.parametrize("name", MIRRORED)
def test_exports_are_temporalios(name: str) -> None:
    """Every public temporalio name is exported as the identical object, except recorded gaps
    and dbosify's own subclasses."""
    ours, theirs = _modules(name)
    public = temporalio_public_names(theirs)
    gaps = GAPS.get(name, {})

    stale = set(gaps) - public
    assert not stale, f"gaps that are not public names of temporalio.{name}: {sorted(stale)}"
    for gap, reason in gaps.items():
        assert reason.strip(), f"gap {name}.{gap} needs a reason"
        assert not hasattr(ours, gap), f"dbosify.{name}.{gap} is recorded as a gap but exported"

    extras = EXTRAS.get(name, {})
    assert not set(extras) & public, f"extras of dbosify.{name} that temporalio.{name} has"
    for extra_name, reason in extras.items():
        assert reason.strip(), f"extra {name}.{extra_name} needs a reason"

    all_names: list[str] = ours.__all__
    assert len(all_names) == len(set(all_names)), f"duplicates in dbosify.{name}.__all__"
    # temporalio.client lists a few underscore helpers in its __all__; they are kept, identical.
    private = [n for n in all_names if n.startswith("_")]
    assert set(private) <= set(getattr(theirs, "__all__", ())), private
    exported = [n for n in all_names if not n.startswith("_")]
    expected = (public - set(gaps)) | set(extras)
    missing = expected - set(exported)
    extra = set(exported) - expected
    assert not missing, f"dbosify.{name} lacks temporalio.{name}'s {sorted(missing)}"
    assert not extra, f"dbosify.{name} exports names temporalio.{name} lacks: {sorted(extra)}"

    # Nothing public beyond __all__ (no stray helper or imported module).
    bound = {n for n in vars(ours) if not n.startswith("_")}
    assert bound == set(exported), f"dbosify.{name} binds {sorted(bound - set(exported))}"

    own = OWN.get(name, {})
    standalone = STANDALONE.get(name, {})
    for replaced, reason in {**own, **standalone}.items():
        assert reason.strip() and replaced in public, replaced
        assert getattr(ours, replaced) is not getattr(theirs, replaced), replaced
    for replaced in own:
        assert issubclass(getattr(ours, replaced), getattr(theirs, replaced)), \
            f"dbosify.{name}.{replaced} must subclass temporalio's"
    different = [n for n in private + exported
                 if n not in own and n not in standalone and n not in extras
                 and getattr(ours, n) is not getattr(theirs, n)]
    assert not different, f"dbosify.{name} objects that are not temporalio's: {different}"


def test_key_objects_are_temporalios() -> None:
    pairs: list[tuple[object, object]] = [
        (dbosify.workflow.defn, temporalio.workflow.defn),
        (dbosify.workflow.run, temporalio.workflow.run),
        (dbosify.workflow.signal, temporalio.workflow.signal),
        (dbosify.workflow.query, temporalio.workflow.query),
        (dbosify.workflow.update, temporalio.workflow.update),
        (dbosify.workflow.execute_activity, temporalio.workflow.execute_activity),
        (dbosify.workflow.start_activity, temporalio.workflow.start_activity),
        (dbosify.workflow.execute_child_workflow, temporalio.workflow.execute_child_workflow),
        (dbosify.workflow.wait_condition, temporalio.workflow.wait_condition),
        (dbosify.workflow.patched, temporalio.workflow.patched),
        (dbosify.workflow.now, temporalio.workflow.now),
        (dbosify.workflow.uuid4, temporalio.workflow.uuid4),
        (dbosify.workflow.info, temporalio.workflow.info),
        (dbosify.workflow.Info, temporalio.workflow.Info),
        (dbosify.workflow.unsafe, temporalio.workflow.unsafe),
        (dbosify.workflow.logger, temporalio.workflow.logger),
        (dbosify.workflow.NondeterminismError, temporalio.workflow.NondeterminismError),
        (dbosify.workflow.ContinueAsNewError, temporalio.workflow.ContinueAsNewError),
        (dbosify.workflow.ActivityConfig, temporalio.workflow.ActivityConfig),
        (dbosify.activity.defn, temporalio.activity.defn),
        (dbosify.activity.heartbeat, temporalio.activity.heartbeat),
        (dbosify.activity.info, temporalio.activity.info),
        (dbosify.activity.Info, temporalio.activity.Info),
        (dbosify.activity.is_cancelled, temporalio.activity.is_cancelled),
        (dbosify.activity.wait_for_cancelled, temporalio.activity.wait_for_cancelled),
        (dbosify.activity.logger, temporalio.activity.logger),
        (dbosify.exceptions.ApplicationError, temporalio.exceptions.ApplicationError),
        (dbosify.exceptions.ActivityError, temporalio.exceptions.ActivityError),
        (dbosify.exceptions.CancelledError, temporalio.exceptions.CancelledError),
        (dbosify.exceptions.FailureError, temporalio.exceptions.FailureError),
        (dbosify.exceptions.TemporalError, temporalio.exceptions.TemporalError),
        (
            dbosify.exceptions.WorkflowAlreadyStartedError,
            temporalio.exceptions.WorkflowAlreadyStartedError,
        ),
        (dbosify.common.RetryPolicy, temporalio.common.RetryPolicy),
        (dbosify.common.SearchAttributeKey, temporalio.common.SearchAttributeKey),
        (dbosify.common.TypedSearchAttributes, temporalio.common.TypedSearchAttributes),
        (dbosify.common.WorkflowIDReusePolicy, temporalio.common.WorkflowIDReusePolicy),
        (dbosify.converter.DataConverter, temporalio.converter.DataConverter),
        (dbosify.converter.PayloadCodec, temporalio.converter.PayloadCodec),
        (dbosify.converter.DefaultFailureConverter, temporalio.converter.DefaultFailureConverter),
        (dbosify.converter.default, temporalio.converter.default),
        (dbosify.testing.ActivityEnvironment, temporalio.testing.ActivityEnvironment),
        (dbosify.testing.TimeSkipper, temporalio.testing.TimeSkipper),
        (dbosify.testing.TimeSkippingConfig, temporalio.testing.TimeSkippingConfig),
        (dbosify.converter.Payload, temporalio.api.common.v1.Payload),
    ]
    for ours, theirs in pairs:
        assert ours is theirs, f"{ours!r} is not temporalio's {theirs!r}"


@dbosify.workflow.defn(name="PublicApiGreeting")
class _Greeting:
    @dbosify.workflow.run
    async def run(self, name: str) -> str:
        return name


@dbosify.activity.defn(name="public_api_greet")
def _greet(name: str) -> str:
    return f"{name} on attempt {dbosify.activity.info().attempt}"


def test_objects_interoperate_with_temporalio() -> None:
    """Sameness in use: temporalio's except clauses, definitions and activity context."""
    with pytest.raises(temporalio.exceptions.ApplicationError):
        raise dbosify.exceptions.ApplicationError("boom", non_retryable=True)

    definition = temporalio.workflow._Definition.from_class(_Greeting)
    assert definition is not None and definition.name == "PublicApiGreeting"
    assert temporalio.activity._Definition.from_callable(_greet) is not None

    env = dbosify.testing.ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=3)
    assert env.run(_greet, "hi") == "hi on attempt 3"


def test_package_root() -> None:
    assert dbosify.__version__ == "0.1.0"
    assert dbosify.__doc__ and "from dbosify import" in dbosify.__doc__
    assert (REPO_ROOT / "dbosify" / "py.typed").is_file()
    for name in MIRRORED:
        doc = importlib.import_module(f"dbosify.{name}").__doc__
        assert doc and "temporalio" in doc, f"dbosify.{name} needs a docstring naming temporalio"


# Run in a fresh interpreter: imports the given modules with a meta-path finder that records every
# attempt to find a notebook-only package (so an optional ``try: import pandas`` is caught even
# where pandas is not installed), then reports what was attempted and what got loaded.
_HEADLESS_PROBE = """
import importlib, json, sys

WATCHED = set(sys.argv[1].split(","))
attempted = []

class _Recorder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in WATCHED:
            attempted.append(name)
        return None

sys.meta_path.insert(0, _Recorder)
for module in sys.argv[2:]:
    importlib.import_module(module)
print(json.dumps({"attempted": attempted, "loaded": sorted(sys.modules)}))
"""


def _import_in_subprocess(modules: tuple[str, ...]) -> tuple[list[str], set[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", _HEADLESS_PROBE, ",".join(NOTEBOOK_ONLY), *modules],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return list(report["attempted"]), set(report["loaded"])


def _top_level_hits(loaded: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if m in roots or m.startswith(tuple(r + "." for r in roots)))


def test_surface_imports_headless_and_light() -> None:
    attempted, loaded = _import_in_subprocess(LIGHT_MODULES)
    assert not attempted, f"importing {LIGHT_MODULES} tried to import {attempted}"
    assert not _top_level_hits(loaded, NOTEBOOK_ONLY)
    heavy = _top_level_hits(loaded, ENGINE_MODULES)
    assert not heavy, f"importing the workflow surface loaded {heavy}"


@pytest.mark.parametrize("module", LATER_MODULES)
def test_later_modules_import_headless(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet; this test covers it once it exists")
    attempted, loaded = _import_in_subprocess(("dbosify", module))
    assert not attempted, f"importing {module} tried to import {attempted}"
    assert not _top_level_hits(loaded, NOTEBOOK_ONLY)


# Every module temporalio's package holds, by walking it as pkgutil does (in a fresh interpreter,
# so the walk's own imports do not leak into the next probe).
_WALK_PROBE = """
import json, pkgutil, temporalio
found = pkgutil.walk_packages(temporalio.__path__, "temporalio.", onerror=lambda name: None)
print(json.dumps(sorted(m.name[len("temporalio."):] for m in found)))
"""

# Imports each module first as dbosify.X (in a fresh interpreter, so an alias's failure is its
# own), then as temporalio.X, and reports the outcome of each and whether they are one object.
_ALIAS_PROBE = """
import importlib, json, sys

def outcome(name):
    try:
        importlib.import_module(name)
        return None
    except BaseException as err:
        return f"{type(err).__name__}: {err}"

report = {}
for name in json.loads(sys.stdin.read()):
    ours, theirs = outcome("dbosify." + name), outcome("temporalio." + name)
    module = sys.modules.get("dbosify." + name)
    report[name] = {
        "ours": ours, "theirs": theirs,
        "same": module is not None and module is sys.modules.get("temporalio." + name),
        "own": module is not None and module.__name__ == "dbosify." + name,
    }
print(json.dumps(report))
"""

# temporalio modules dbosify defines itself; every other one is temporalio's under an alias.
OWN_MODULES = {*MIRRORED, "client._client", "worker._worker", "testing._workflow"}


def _probe(code: str, stdin: str = "") -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_temporalio_module_imports_under_dbosify() -> None:
    """``import dbosify.X`` for every module X of temporalio's package: temporalio's very module,
    or dbosify's own for the modules it must change; a module that cannot be imported (a contrib
    module whose optional dependency is missing) fails exactly as temporalio's."""
    names: list[str] = _probe(_WALK_PROBE)
    assert len(names) > 300 and {"envconfig", "contrib.pydantic", "api.common.v1", "runtime",
                                 "worker.workflow_sandbox", "client._impl"} <= set(names)
    report: dict[str, dict[str, Any]] = _probe(_ALIAS_PROBE, json.dumps(names))
    differ = {n: (r["ours"], r["theirs"]) for n, r in report.items() if r["ours"] != r["theirs"]}
    assert not differ, f"imports that differ between dbosify and temporalio: {differ}"
    failing = {n for n, r in report.items() if r["theirs"] is not None}
    # temporalio's own broken or optional modules (proto packages with missing deps, contrib
    # integrations whose library is not installed here); the same set must fail for dbosify.
    assert "contrib.pydantic" not in failing and "envconfig" not in failing
    own = {n for n, r in report.items() if r["own"]}
    assert own == OWN_MODULES, own
    not_same = sorted(n for n, r in report.items()
                      if r["theirs"] is None and n not in own and not r["same"])
    assert not not_same, f"aliases that are not temporalio's module object: {not_same}"


def test_alias_is_temporalios_module() -> None:
    import dbosify.api.common.v1
    import dbosify.envconfig
    import temporalio.api.common.v1
    import temporalio.envconfig
    from dbosify.contrib.pydantic import pydantic_data_converter
    from dbosify.worker.workflow_sandbox import SandboxedWorkflowRunner

    assert dbosify.envconfig is temporalio.envconfig
    assert dbosify.api.common.v1 is temporalio.api.common.v1
    # temporalio's module keeps its own identity (the import system's spec is given back).
    assert dbosify.envconfig.__name__ == "temporalio.envconfig"
    assert dbosify.envconfig.__spec__ is not None
    assert dbosify.envconfig.__spec__.name == "temporalio.envconfig"
    assert importlib.reload(temporalio.envconfig) is temporalio.envconfig
    import temporalio.contrib.pydantic
    import temporalio.worker.workflow_sandbox
    assert pydantic_data_converter is temporalio.contrib.pydantic.pydantic_data_converter
    assert SandboxedWorkflowRunner is temporalio.worker.workflow_sandbox.SandboxedWorkflowRunner
    # dbosify's own modules win, and its private modules are never temporalio's.
    import dbosify.client._client
    assert dbosify.client._client.__name__ == "dbosify.client._client"
    with pytest.raises(ModuleNotFoundError, match=r"dbosify\._nothing"):
        importlib.import_module("dbosify._nothing")
    with pytest.raises(ModuleNotFoundError, match=r"dbosify\.nothing"):
        importlib.import_module("dbosify.nothing")

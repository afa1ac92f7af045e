"""The ``%dbosify`` and ``%workflow`` magics: thin doors over :mod:`dbosify.notebook`."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import temporalio.client
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from temporalio.service import RPCError, RPCStatusCode

import dbosify.notebook as nb
from dbosify._exceptions import DbosifyError
from dbosify.notebook import _session as session_module
from dbosify.notebook._config import Dbosify, NotebookUsageError
from dbosify.notebook._session import Session

_SUBCOMMANDS = ("start", "signal", "query", "update", "cancel", "terminate", "result", "runs",
                "history", "timeline", "replay", "watch")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one line (IPython's UsageError)."""

    def __init__(self, prog: str, usage: str) -> None:
        super().__init__(prog=prog, usage=usage, add_help=False, allow_abbrev=False)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (usage: {self.usage})")


def _parser(prog: str, usage: str, *flags: _Flag) -> _Parser:
    parser = _Parser(prog, usage)
    for name, options in flags:
        parser.add_argument(name, **options)
    return parser


_Flag = tuple[str, dict[str, Any]]
_ARGS: _Flag = ("args", {"nargs": "*"})
_ID: _Flag = ("id", {})
_NAME: _Flag = ("name", {})
_PARSERS = {
    "start": _parser("%workflow start",
                     "%workflow start TYPE [ARG ...] [--id ID] [--task-queue Q] [--wait]",
                     ("type", {}), _ARGS, ("--id", {"dest": "workflow_id"}),
                     ("--task-queue", {}), ("--wait", {"action": "store_true"})),
    "signal": _parser("%workflow signal", "%workflow signal ID NAME [ARG ...]", _ID, _NAME, _ARGS),
    "query": _parser("%workflow query", "%workflow query ID NAME [ARG ...]", _ID, _NAME, _ARGS),
    "update": _parser("%workflow update", "%workflow update ID NAME [ARG ...]", _ID, _NAME, _ARGS),
    "cancel": _parser("%workflow cancel", "%workflow cancel ID", _ID),
    "terminate": _parser("%workflow terminate", "%workflow terminate ID [--reason TEXT]", _ID,
                         ("--reason", {})),
    "result": _parser("%workflow result", "%workflow result ID [--timeout SECONDS]", _ID,
                      ("--timeout", {"type": float})),
    "history": _parser("%workflow history", "%workflow history ID", _ID),
    "timeline": _parser("%workflow timeline", "%workflow timeline ID", _ID),
    "replay": _parser("%workflow replay", "%workflow replay ID", _ID),
    "cell": _parser("%%workflow", "%%workflow [--task-queue Q]", ("--task-queue", {})),
    "connect": _parser("%dbosify connect", "%dbosify connect [URL] [--notebook NAME]",
                       ("url", {"nargs": "?"}), ("--notebook", {})),
}


def _split(line: str, prog: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as err:  # An unclosed quote.
        raise UsageError(f"{prog}: {err}") from None


def parse_args(words: list[str], namespace: Mapping[str, Any]) -> list[Any]:
    """Each word as a Python expression in ``namespace``; a word that is not valid Python or
    names nothing is passed as the string itself: ``3`` is 3, ``Ann`` is "Ann", ``x`` is the
    variable ``x``. Any other error evaluating a word is a usage error naming it."""
    values = []
    for word in words:
        try:
            values.append(eval(word, dict(namespace)))
        except (SyntaxError, NameError):
            values.append(word)
        except Exception as err:
            raise UsageError(f"argument {word!r}: {type(err).__name__}: {err}") from None
    return values


@magics_class
class DbosifyMagics(Magics):
    """``%dbosify`` (connect, status) and ``%workflow``/``%%workflow``."""

    def __init__(self, shell: InteractiveShell, config: Dbosify) -> None:
        super().__init__(shell)
        self.dbosify_config = config

    # Helpers ------------------------------------------------------------------------------------

    @property
    def _ns(self) -> dict[str, Any]:
        assert self.shell is not None
        ns: dict[str, Any] = self.shell.user_ns
        return ns

    def _session(self) -> Session:
        session = session_module._session
        if session is None or session.closed:
            session, report = nb.connect(config=self.dbosify_config, namespace=self._ns)
            if report is not None:
                print(report)
        return session

    def _id(self, word: str) -> str:
        # A handle the notebook holds (h = %workflow start ...) stands for its workflow id.
        value = self._ns.get(word)
        if isinstance(value, temporalio.client.WorkflowHandle):
            return value.id
        return word

    def _guard(self, fn: Callable[[], Any]) -> Any:
        """Run a magic's work; every usage mistake becomes one line."""
        try:
            return fn()
        except UsageError:
            raise
        except (NotebookUsageError, DbosifyError, LookupError, FileNotFoundError) as err:
            raise UsageError(str(err).splitlines()[0] if str(err) else type(err).__name__) \
                from None
        except TimeoutError as err:
            raise UsageError(str(err)) from None
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                raise UsageError(err.message) from None
            raise

    # %dbosify -----------------------------------------------------------------------------------

    @line_magic("dbosify")  # type: ignore[arg-type]  # IPython's decorator types are loose
    def dbosify(self, line: str) -> Any:
        """``%dbosify connect [URL] [--notebook NAME]`` or ``%dbosify status``."""
        command, _, rest = line.strip().partition(" ")
        if command == "connect":
            args = _PARSERS["connect"].parse_args(_split(rest, "%dbosify connect"))

            def connect() -> None:
                _, report = nb.connect(args.url, notebook=args.notebook,
                                       config=self.dbosify_config, namespace=self._ns)
                session = nb.current_session()
                print(f"dbosify: connected to {session.db.redacted} (notebook {session.notebook})")
                if report is not None:
                    print(report)

            return self._guard(connect)
        if command == "status":
            if rest.strip():
                raise UsageError("%dbosify status takes no arguments")
            return self._guard(lambda: self._session().status())
        raise UsageError(f"%dbosify: unknown command {command!r}: use '%dbosify connect [URL] "
                         "[--notebook NAME]' or '%dbosify status'" if command else
                         "%dbosify: give a command: connect [URL] [--notebook NAME], or status")

    # %workflow / %%workflow ---------------------------------------------------------------------

    @line_cell_magic("workflow")  # type: ignore[arg-type]
    def workflow(self, line: str, cell: str | None = None) -> Any:
        """``%%workflow [--task-queue Q]`` defines a cell's workflows and activities; the line
        form drives runs: start, signal, query, update, cancel, terminate, result, runs,
        history, timeline, replay, watch (see ``dbosify.magics``)."""
        if cell is not None:
            return self._define(line, cell)
        command, _, rest = line.strip().partition(" ")
        if command not in _SUBCOMMANDS:
            known = ", ".join(_SUBCOMMANDS)
            raise UsageError(f"%workflow: unknown command {command!r} (commands: {known})"
                             if command else f"%workflow: give a command ({known})")
        return getattr(self, f"_{command}")(rest)

    def _define(self, line: str, cell: str) -> None:
        args = _PARSERS["cell"].parse_args(_split(line, "%%workflow"))

        def define() -> None:
            defined = self._session().define(cell, task_queue=args.task_queue,
                                             namespace=self._ns)
            print(f"dbosify: {', '.join(defined.names)} (version {defined.version}, task queue "
                  f"{defined.task_queue})")

        self._guard(define)

    def _parse(self, command: str, rest: str) -> argparse.Namespace:
        parser = _PARSERS[command]
        return parser.parse_intermixed_args(_split(rest, parser.prog))

    def _start(self, rest: str) -> Any:
        args = self._parse("start", rest)
        values = parse_args(args.args, self._ns)

        def start() -> Any:
            session = self._session()
            if not args.wait:
                return session.start(args.type, *values, id=args.workflow_id,
                                     task_queue=args.task_queue)
            return self._wait(lambda: session.execute(
                args.type, *values, id=args.workflow_id, task_queue=args.task_queue),
                args.workflow_id or args.type)

        return self._guard(start)

    def _wait(self, fn: Callable[[], Any], workflow_id: str) -> Any:
        try:
            return fn()
        except KeyboardInterrupt:
            print(f"dbosify: stopped waiting for {workflow_id!r}; the run goes on",
                  file=sys.stderr)
            raise

    def _signal(self, rest: str) -> None:
        args = self._parse("signal", rest)
        values = parse_args(args.args, self._ns)
        wid = self._id(args.id)
        self._guard(lambda: self._session().signal(wid, args.name, *values))
        print(f"dbosify: signal {args.name!r} sent to {wid!r}")

    def _query(self, rest: str) -> Any:
        args = self._parse("query", rest)
        values = parse_args(args.args, self._ns)
        wid = self._id(args.id)
        return self._guard(lambda: _handler_call(
            "query", wid, lambda: self._session().query(wid, args.name, *values)))

    def _update(self, rest: str) -> Any:
        args = self._parse("update", rest)
        values = parse_args(args.args, self._ns)
        wid = self._id(args.id)
        return self._guard(lambda: _handler_call(
            "update", wid, lambda: self._session().update(wid, args.name, *values)))

    def _cancel(self, rest: str) -> None:
        args = self._parse("cancel", rest)
        wid = self._id(args.id)
        self._guard(lambda: self._session().cancel(wid))
        print(f"dbosify: cancellation requested for {wid!r}")

    def _terminate(self, rest: str) -> None:
        args = self._parse("terminate", rest)
        wid = self._id(args.id)
        self._guard(lambda: self._session().terminate(wid, args.reason))
        print(f"dbosify: terminated {wid!r}" + (f" ({args.reason})" if args.reason else ""))

    def _result(self, rest: str) -> Any:
        args = self._parse("result", rest)
        wid = self._id(args.id)
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("%workflow result: --timeout must be a positive number of seconds")
        return self._guard(lambda: self._wait(
            lambda: self._session().result(wid, args.timeout), wid))

    def _runs(self, rest: str) -> Any:
        query = rest.strip() or None
        return self._guard(lambda: nb.runs_frame(self._session().client, query))

    def _history(self, rest: str) -> Any:
        args = self._parse("history", rest)
        return self._guard(lambda: nb.history_frame(self._handle(args.id)))

    def _timeline(self, rest: str) -> Any:
        args = self._parse("timeline", rest)

        return self._guard(lambda: nb.timeline(self._handle(args.id)))

    def _replay(self, rest: str) -> Any:
        args = self._parse("replay", rest)
        return self._guard(lambda: nb.replay_frame(self._session().client, self._id(args.id)))

    def _watch(self, rest: str) -> Any:
        target = rest.strip()

        def watch() -> Any:
            widgets: Any = importlib.import_module("dbosify.widgets")
            session = self._session()
            words = _split(target, "%workflow watch")
            if len(words) == 1 and "=" not in words[0]:
                return widgets.RunPanel(self._handle(words[0]), autostart=True)
            return widgets.RunsMonitor(session.client, target or None)

        return self._guard(watch)

    def _handle(self, word: str) -> Any:
        session = self._session()
        wid = self._id(word)
        handle = session.handle(wid)
        session.run(handle.describe())  # An unknown id is a usage mistake, said here.
        return handle


# temporalio's words when a workflow has no handler of the name (its RuntimeError, which
# reaches the client as the failure's message).
_NO_HANDLER = re.compile(r"(?:Update|Query) handler for '(?P<name>.*?)' expected but not found"
                         r".*known (?:updates|queries): \[(?P<known>[^\]]*)\]", re.S)


def _handler_call(kind: str, workflow_id: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` (a query or an update); a workflow with no handler of that name is a usage
    mistake, said in one line with the names it has."""
    try:
        return fn()
    except (temporalio.client.WorkflowUpdateFailedError,
            temporalio.client.WorkflowQueryFailedError) as err:
        message = err.message if isinstance(err, temporalio.client.WorkflowQueryFailedError) \
            else str(getattr(err.cause, "message", ""))
        found = _NO_HANDLER.search(message)
        if found is None:
            if isinstance(err, temporalio.client.WorkflowQueryFailedError):
                # A query that failed for another reason: its message is the whole story.
                raise UsageError(f"%workflow query: {message.splitlines()[0]}") from None
            raise
        known = ", ".join(found["known"].split()) or "none"
        plural = "updates" if kind == "update" else "queries"
        raise UsageError(f"%workflow {kind}: workflow {workflow_id!r} has no {kind} handler "
                         f"{found['name']!r} (its {plural}: {known})") from None


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext dbosify.magics``: register the magics and ``%config Dbosify``, connect, start
    the in-process worker and restore this notebook's saved ``%%workflow`` cells."""
    configurables: list[Any] = ipython.configurables
    config = next((c for c in configurables if isinstance(c, Dbosify)), None)
    if config is None:
        config = Dbosify(parent=ipython)
        configurables.append(config)
    ipython.register_magics(DbosifyMagics(ipython, config))
    try:
        session, report = nb.connect(config=config, namespace=ipython.user_ns)
    except (NotebookUsageError, DbosifyError, OSError) as err:
        print(f"dbosify: not connected: {err}. Fix it, then run %dbosify connect [URL]",
              file=sys.stderr)
        return
    except Exception as err:  # e.g. an unreachable database: say it in one line
        print(f"dbosify: not connected: {str(err).splitlines()[0] if str(err) else err!r}. "
              "Fix it, then run %dbosify connect [URL]", file=sys.stderr)
        return
    print(f"dbosify: connected to {session.db.redacted} (notebook {session.notebook})")
    if report is not None:
        print(report)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """``%unload_ext dbosify.magics``: stop the session's workers (runs stay in the database)."""
    nb.close()

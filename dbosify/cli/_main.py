"""The ``dbosify`` command: workers, promotion, and driving runs from a shell.

Every command finds the database as DESIGN §3 says (``--database``, ``DBOSIFY_DATABASE_URL``,
``DBOS_SYSTEM_DATABASE_URL``, ``[tool.dbosify] database``, the embedded default) and the task
queue from ``--task-queue``, ``[tool.dbosify] task_queue``, else ``dbosify``. Exit codes: 0 ok,
1 a failed run (or an error such as an unknown id or an unreachable database), 2 usage.

Imports stay inside the commands: ``dbosify runs`` must not pay for DBOS and the engine.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import click

from dbosify.cli import _common as c

F = TypeVar("F", bound=Callable[..., Any])


def _database_option(fn: F) -> F:
    return click.option("--database", metavar="URL",
                        help="Database URL (default: DBOSIFY_DATABASE_URL, "
                             "DBOS_SYSTEM_DATABASE_URL, [tool.dbosify], else the embedded "
                             ".dbosify/dbosify.sqlite).")(fn)


def _run_id_option(fn: F) -> F:
    return click.option("--run-id", default="", metavar="RUN_ID",
                        help="A run of the workflow id (default: its latest).")(fn)


class _Commands(click.Group):
    """click's group, with every error as one line on stderr (no usage block, no traceback)
    and dbosify's exit codes: 0 ok, 1 failed, 2 usage."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name or "dbosify",
                                complete_var=complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("dbosify: aborted", err=True)
            sys.exit(c.EXIT_FAILED)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.format_message())  # The help text, as click shows it.
            sys.exit(c.EXIT_USAGE)
        except click.UsageError as err:
            path = err.ctx.command_path if err.ctx else "dbosify"
            click.echo(f"{path}: error: {err.format_message()} (see {path} --help)", err=True)
            sys.exit(c.EXIT_USAGE)
        except click.ClickException as err:
            click.echo(f"dbosify: error: {err.format_message()}", err=True)
            sys.exit(err.exit_code)
        sys.exit(code if isinstance(code, int) else c.EXIT_OK)


@click.group("dbosify", cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """dbosify: Temporal workflows on Postgres or SQLite. Run, promote and inspect them."""


# -- workers and promotion --------------------------------------------------------------------


@cli.command()
@click.argument("module_or_file")
@click.option("--task-queue", metavar="Q", help="Task queue to serve (default: "
              "[tool.dbosify] task_queue, else 'dbosify').")
@_database_option
@click.option("--identity", metavar="NAME", help="Worker identity shown in histories.")
def worker(module_or_file: str, task_queue: str | None, database: str | None,
           identity: str | None) -> None:
    """Serve every workflow and activity of MODULE_OR_FILE until SIGTERM or Ctrl-C.

    Runs left pending are picked up on start; one line is logged per finished run; on SIGTERM
    running activities get the graceful-shutdown timeout to finish, then the worker exits 0.
    """
    from dbosify.cli._worker import serve

    serve(module_or_file, c.task_queue(task_queue), database, identity)


@cli.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--schedule", "cron", metavar="CRON", help="Cron string of the schedule.")
@click.option("--every", metavar="DURATION", help="Interval of the schedule: 30s, 5m, 1h, 1d.")
@click.option("--workflow", "workflow_type", metavar="TYPE",
              help="Workflow type the schedule starts (needed when there are several).")
@click.option("--args", "args_json", metavar="JSON",
              help="JSON array of the workflow's positional arguments (default: the "
                   "parameters cell as one dict when run takes one parameter).")
@click.option("--task-queue", metavar="Q", help="Task queue of the scheduled runs.")
@click.option("--output", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder of pipeline.py and README.md (default: pipelines/<notebook stem>/).")
@_database_option
def promote(notebook: str, cron: str | None, every: str | None, workflow_type: str | None,
            args_json: str | None, task_queue: str | None, output: str | None,
            database: str | None) -> None:
    """Turn NOTEBOOK's %%workflow cells and parameters cell into a module (and a schedule).

    Writes DIR/pipeline.py and DIR/README.md; with --schedule or --every it creates or
    updates the schedule promoted-<notebook stem>. Promoting again changes nothing.
    """
    from dbosify.promote import PromotionError, promote_notebook

    if cron and every:
        raise c.usage("give --schedule or --every, not both")
    try:
        with c.Progress(f"promoting {notebook}") as progress:
            report = promote_notebook(notebook, cron=cron, every=every, workflow=workflow_type,
                                      args_json=args_json, task_queue=c.task_queue(task_queue),
                                      output=output, database=database, progress=progress.step)
    except PromotionError as err:
        raise c.CommandError(str(err), err.exit_code) from None
    for line in report.lines():
        click.echo(line)


# -- reading ----------------------------------------------------------------------------------


@cli.command()
@click.argument("query", nargs=-1)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Most runs to list.")
@_database_option
def runs(query: tuple[str, ...], limit: int, database: str | None) -> None:
    """Runs matching a visibility QUERY (all without one), newest first.

    Example: dbosify runs "WorkflowType = 'Report' AND ExecutionStatus = 'Failed'"
    """
    from dbosify.cli._read import RUN_COLUMNS, run_rows

    rows = run_rows(database, " ".join(query) or None, limit)
    if not rows:
        click.echo("no runs" + (" match the query" if query else ""))
        return
    click.echo(c.table(rows, [col for col in RUN_COLUMNS if col != "run_id"]))
    if len(rows) == limit:
        click.echo(f"(the newest {limit}; --limit N lists more)", err=True)


@cli.command()
@click.argument("workflow_id", metavar="ID")
@_run_id_option
@_database_option
def show(workflow_id: str, run_id: str, database: str | None) -> None:
    """The history of workflow ID (its latest run) as a table, one row per event."""
    from dbosify.cli._read import history
    from dbosify.history._rows import HISTORY_COLUMNS

    rows = history(database, workflow_id, run_id)
    click.echo(c.table(rows, [col for col in HISTORY_COLUMNS if col != "identity"]))


@cli.command()
@click.argument("workflow_id", metavar="ID")
@_run_id_option
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop waiting for a running run after this long (exit 1).")
@_database_option
def result(workflow_id: str, run_id: str, timeout: float | None, database: str | None) -> None:
    """The result of workflow ID as JSON (waits while it runs); exit 1 if the run failed."""
    from dbosify.cli._read import result as read_result

    ok, value = read_result(database, workflow_id, run_id, timeout)
    if not ok:
        raise c.CommandError(f"workflow {workflow_id!r} {value}")
    click.echo(c.show_value(value))


# -- driving runs -----------------------------------------------------------------------------


@cli.command()
@click.argument("workflow_type", metavar="TYPE")
@click.argument("args", nargs=-1, metavar="[ARG]...")
@click.option("--id", "workflow_id", metavar="ID", help="Workflow id (default: TYPE-<uuid>).")
@click.option("--task-queue", metavar="Q", help="Task queue (default: [tool.dbosify] "
              "task_queue, else 'dbosify').")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@_database_option
def start(workflow_type: str, args: tuple[str, ...], workflow_id: str | None,
          task_queue: str | None, wait: bool, database: str | None) -> None:
    """Start a run of TYPE; each ARG is one JSON value. Prints its workflow and run id."""
    values = c.json_values(args)
    queue = c.task_queue(task_queue)
    wid = workflow_id or f"{workflow_type}-{uuid.uuid4().hex[:12]}"

    async def go() -> tuple[str, str | None]:
        client = await c.connect(database)
        try:
            with c.rpc_errors():
                handle = await client.start_workflow(workflow_type, args=values, id=wid,
                                                     task_queue=queue)
            return handle.first_execution_run_id or handle.result_run_id or "", None
        finally:
            await client.close()  # type: ignore[attr-defined]

    started_run, _ = c.run(go())
    click.echo(f"started {workflow_type} id={wid} run_id={started_run} task_queue={queue}")
    if wait:
        from dbosify.cli._read import result as read_result

        ok, value = read_result(database, wid, "", None)
        if not ok:
            raise c.CommandError(f"workflow {wid!r} {value}")
        click.echo(c.show_value(value))


def _handle_command(name: str, doc: str, with_args: bool, returns: bool) -> None:
    """signal / query / update: ID NAME [ARG]..., each ARG a JSON value."""

    @click.argument("workflow_id", metavar="ID")
    @click.argument("handler", metavar="NAME")
    @click.argument("args", nargs=-1, metavar="[ARG]...")
    @_run_id_option
    @_database_option
    def command(workflow_id: str, handler: str, args: tuple[str, ...], run_id: str,
                database: str | None) -> None:
        values = c.json_values(args)

        async def go() -> Any:
            client = await c.connect(database)
            try:
                with c.rpc_errors(workflow_id):
                    handle = client.get_workflow_handle(workflow_id, run_id=run_id or None)
                    method = {"signal": handle.signal, "query": handle.query,
                              "update": handle.execute_update}[name]
                    return await method(handler, args=values)  # type: ignore[operator]
            finally:
                await client.close()  # type: ignore[attr-defined]

        try:
            value = c.run(go())
        except c.CommandError:
            raise
        except Exception as err:  # A handler's own failure (a query or update raising).
            raise c.CommandError(f"{name} {handler!r} of {workflow_id!r} failed: "
                                 f"{_message(err)}") from None
        click.echo(c.show_value(value) if returns else f"{name} {handler!r} sent to "
                   f"{workflow_id!r}")

    command.__doc__ = doc
    cli.command(name)(command)


def _message(err: BaseException) -> str:
    cause = err.__cause__
    return str(err) + (f": {cause}" if cause is not None and str(cause) != str(err) else "")


_handle_command("signal", "Send signal NAME to workflow ID; each ARG is one JSON value.",
                True, False)
_handle_command("query", "Ask query NAME of workflow ID and print the answer as JSON.",
                True, True)
_handle_command("update", "Send update NAME to workflow ID and print its result as JSON.",
                True, True)


@cli.command()
@click.argument("workflow_id", metavar="ID")
@_run_id_option
@_database_option
def cancel(workflow_id: str, run_id: str, database: str | None) -> None:
    """Ask workflow ID to cancel (its code decides how)."""

    async def go() -> None:
        client = await c.connect(database)
        try:
            with c.rpc_errors(workflow_id):
                await client.get_workflow_handle(workflow_id, run_id=run_id or None).cancel()
        finally:
            await client.close()  # type: ignore[attr-defined]

    c.run(go())
    click.echo(f"cancel requested for {workflow_id!r}")


@cli.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--reason", default="", metavar="TEXT", help="Why; recorded in the history.")
@_run_id_option
@_database_option
def terminate(workflow_id: str, reason: str, run_id: str, database: str | None) -> None:
    """End workflow ID at once (no code of it runs)."""

    async def go() -> None:
        client = await c.connect(database)
        try:
            with c.rpc_errors(workflow_id):
                await client.get_workflow_handle(workflow_id, run_id=run_id or None) \
                    .terminate(reason=reason or None)
        finally:
            await client.close()  # type: ignore[attr-defined]

    c.run(go())
    click.echo(f"terminated {workflow_id!r}")


# -- schedules --------------------------------------------------------------------------------


@cli.group()
def schedule() -> None:
    """List and drive schedules: list | describe | pause | unpause | trigger | delete."""


@schedule.command("list")
@_database_option
def schedule_list(database: str | None) -> None:
    """Every schedule, with its workflow type and next run."""
    from dbosify.cli._schedules import list_rows

    rows = c.run(list_rows(database))
    if not rows:
        click.echo("no schedules")
        return
    click.echo(c.table(rows, ["id", "workflow", "spec", "paused", "next_run", "note"]))


@schedule.command("describe")
@click.argument("schedule_id", metavar="ID")
@_database_option
def schedule_describe(schedule_id: str, database: str | None) -> None:
    """A schedule's definition, state and recent runs."""
    from dbosify.cli._schedules import describe_lines

    for line in c.run(describe_lines(database, schedule_id)):
        click.echo(line)


def _schedule_action(name: str, doc: str, done: str) -> None:
    @_database_option
    @click.argument("schedule_id", metavar="ID")
    def command(schedule_id: str, database: str | None, **options: Any) -> None:
        from dbosify.cli._schedules import act

        c.run(act(database, schedule_id, name, options.get("note")))
        click.echo(f"schedule {schedule_id!r} {done}")

    command.__doc__ = doc
    if name in ("pause", "unpause"):
        command = click.option("--note", metavar="TEXT", help="Why; shown by describe.")(command)
    schedule.command(name)(command)


_schedule_action("pause", "Stop a schedule from starting runs.", "paused")
_schedule_action("unpause", "Let a paused schedule start runs again.", "unpaused")
_schedule_action("trigger", "Start a schedule's action now.", "triggered")
_schedule_action("delete", "Delete a schedule (runs it started go on).", "deleted")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dbosify`` command (the console script)."""
    cli.main(args=argv, prog_name="dbosify")

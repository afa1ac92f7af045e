"""``dbosify promote``: a notebook's workflow cells become one module, and a schedule.

The module is the ``%%workflow`` cells in notebook order (each is self-contained, so together
they are an ordinary module), followed by the promotion's constants: the ``parameters`` cell's
values, the workflow type, its arguments, the task queue and the schedule. Output is a
function of the notebook and the options only, so promoting twice writes the same bytes and a
checked-in ``pipeline.py`` shows in review exactly what a notebook change does.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import pprint
import re
import shlex
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import temporalio.activity
import temporalio.workflow

from dbosify._cells import CellError, import_cell
from dbosify.promote._notebook import NotebookSource, PromotionError, read_notebook

_EVERY = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FUTURE = re.compile(r"^from\s+__future__\s+import\s+annotations\s*(#.*)?$", re.MULTILINE)
MEMO_KEY = "dbosify_promotion"
"""Memo key (on the scheduled runs) holding the promotion's fingerprint."""


@dataclass
class Promotion:
    """What ``promote`` decided and did."""

    notebook: Path
    output: Path
    module_text: str
    readme_text: str
    workflows: list[str]
    activities: list[str]
    workflow: str | None
    args: list[Any]
    task_queue: str
    schedule_id: str
    schedule: dict[str, str] | None
    written: list[Path] = field(default_factory=list)
    schedule_outcome: str | None = None

    def lines(self) -> list[str]:
        """What to tell the user, one line each."""
        files = [self.output / "pipeline.py", self.output / "README.md"]
        out = [f"{'wrote' if f in self.written else 'unchanged'} {_shown(f)}" for f in files]
        if self.schedule_outcome:
            spec = next(f"{k} {v}" for k, v in (self.schedule or {}).items())
            out.append(f"schedule {self.schedule_id!r} {self.schedule_outcome} ({spec}, starts "
                       f"{self.workflow} on task queue {self.task_queue!r})")
        out.append(f"serve it: dbosify worker {_shown(self.output / 'pipeline.py')}"
                   + ("" if self.task_queue == "dbosify" else f" --task-queue {self.task_queue}"))
        return out


def parse_every(text: str) -> timedelta:
    """``30s``, ``5m``, ``1h``, ``1d`` as a positive interval."""
    match = _EVERY.match(text)
    if not match or int(match.group(1)) <= 0:
        raise PromotionError(f"--every {text!r} is not a duration: write a positive number "
                             "and a unit, like 30s, 5m, 1h or 1d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _check_cron(cron: str) -> None:
    from dbosify._runtime._schedule_spec import ScheduleSpecError, parse_cron

    try:
        parse_cron(cron)
    except ScheduleSpecError as err:
        reason = str(err).removeprefix(f"invalid cron string {cron!r}: ")
        raise PromotionError(f"--schedule {cron!r} is not a cron string ({reason}); write five "
                             "fields like '0 6 * * *' (06:00 daily) or '@daily'") from None


def _shown(path: Path) -> str:
    """A path as messages and generated text show it: relative to the project, POSIX style."""
    from dbosify._store._database import project_root

    resolved = path.resolve()
    for base in (project_root(), Path.cwd().resolve()):
        try:
            return resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return resolved.as_posix()


def _cell_definitions(nb: NotebookSource, task_queue: str, advance: Callable[[], None]
                      ) -> tuple[dict[str, tuple[int, type]], dict[str, int]]:
    """Workflow type -> (cell, class) and activity name -> cell, over all cells; two cells
    defining one name is an error (the module could hold only one of them)."""
    workflows: dict[str, tuple[int, type]] = {}
    activities: dict[str, int] = {}
    for cell in nb.cells:
        try:
            module = import_cell(cell.source, cell.task_queue or task_queue)
        except CellError as err:
            raise PromotionError(f"cell {cell.index}: {err}") from None
        except Exception as err:
            raise PromotionError(f"cell {cell.index} raised {type(err).__name__}: {err} when "
                                 "imported; promotion imports each %%workflow cell as the "
                                 "notebook does", 1) from None
        for name, cls in module.workflows.items():
            if name in workflows:
                raise PromotionError(f"cells {workflows[name][0]} and {cell.index} both define "
                                     f"workflow {name!r}: a module holds one; keep one cell")
            workflows[name] = (cell.index, cls)
        for name, fn in module.activities.items():
            if getattr(fn, "__module__", None) != module.module.__name__:
                continue  # Imported by the cell, not defined there.
            if name in activities:
                raise PromotionError(f"cells {activities[name]} and {cell.index} both define "
                                     f"activity {name!r}: a module holds one; keep one cell")
            activities[name] = cell.index
        advance()
    return workflows, activities


def _run_parameters(cls: type) -> int:
    defn = temporalio.workflow._Definition.must_from_class(cls)
    if defn.run_fn is None:
        return 0
    params = list(inspect.signature(defn.run_fn).parameters.values())[1:]
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])


def render_module(nb: NotebookSource, shown_notebook: str, shown_module: str,
                  workflows: list[str], activities: list[str], workflow: str | None,
                  args: list[Any], task_queue: str, schedule_id: str,
                  schedule: dict[str, str] | None) -> str:
    """The text of ``pipeline.py``."""
    future = any(_FUTURE.search(cell.source) for cell in nb.cells)
    queue_flag = "" if task_queue == "dbosify" else f" --task-queue {task_queue}"
    out = [
        f'"""Promoted from {shown_notebook} by ``dbosify promote``: do not edit.',
        "",
        "Change the notebook and promote it again: the same notebook and options always give",
        "this same file, so its diff shows what a notebook change does to the pipeline.",
        "",
        f"Workflows: {', '.join(workflows) or '-'}. Activities: {', '.join(activities) or '-'}.",
        f"Serve it:  dbosify worker {shown_module}{queue_flag}",
        '"""',
        "",
    ]
    if future:
        out += ["from __future__ import annotations", ""]
    for number, cell in enumerate(nb.cells, start=1):
        source = _FUTURE.sub("", cell.source).strip("\n") if future else \
            cell.source.strip("\n")
        title = f"# -- %%workflow cell {number} of {len(nb.cells)} (notebook cell {cell.index}) "
        out += ["", title + "-" * max(4, 99 - len(title)), "", source, ""]
    title = "# -- promotion: fixed when promoted (a run reads its own date from workflow.now()) "
    out += ["", title + "-" * max(4, 99 - len(title)), ""]
    out.append("PARAMETERS: dict[str, object] = "
               + _literal(nb.parameters or {}) + "  # the notebook's `parameters` cell")
    out.append(f"WORKFLOW: str | None = {workflow!r}")
    out.append("ARGS: list[object] = " + _literal(args))
    out.append(f"TASK_QUEUE = {task_queue!r}")
    out.append(f"SCHEDULE_ID = {schedule_id!r}")
    out.append(f"SCHEDULE: dict[str, str] | None = {_literal(schedule) if schedule else None}")
    return "\n".join(out) + "\n"


def _literal(value: Any) -> str:
    """A Python literal of a JSON value, one item per line for a non-empty dict or list."""
    if isinstance(value, dict) and value:
        items = [f"    {k!r}: {_indented(v)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n}"
    if isinstance(value, list) and value:
        return "[\n" + "\n".join(f"    {_indented(v)}," for v in value) + "\n]"
    return pprint.pformat(value, sort_dicts=False)


def _indented(value: Any) -> str:
    return _literal(value).replace("\n", "\n    ")


def render_readme(stem: str, shown_notebook: str, shown_module: str, workflows: list[str],
                  workflow: str | None, args: list[Any], task_queue: str, schedule_id: str,
                  schedule: dict[str, str] | None) -> str:
    """The text of ``README.md``: how to run the promoted pipeline."""
    queue_flag = "" if task_queue == "dbosify" else f" --task-queue {task_queue}"
    args_words = " ".join(shlex.quote(json.dumps(a)) for a in args)
    lines = [
        f"# {stem}",
        "",
        f"Promoted from `{shown_notebook}` by `dbosify promote`. `pipeline.py` is generated:",
        "change the notebook and promote it again rather than editing it.",
        "",
        "## Run it",
        "",
        "Serve its workflows and activities (Ctrl-C or SIGTERM stops the worker cleanly; runs",
        "left unfinished continue on the next worker):",
        "",
        "```bash",
        f"dbosify worker {shown_module}{queue_flag}",
        "```",
        "",
    ]
    if schedule:
        kind, value = next(iter(schedule.items()))
        flag = "--schedule" if kind == "cron" else "--every"
        lines += [
            f"The schedule `{schedule_id}` starts `{workflow}` ({kind} `{value}`) with the",
            f"arguments `{json.dumps(args)}`. Inspect and drive it with:",
            "",
            "```bash",
            f"dbosify schedule describe {schedule_id}",
            f"dbosify schedule pause {schedule_id}",
            f"dbosify schedule trigger {schedule_id}",
            "dbosify runs \"WorkflowType = '" + str(workflow) + "'\"",
            "```",
            "",
            "To change it, promote again:",
            "",
            "```bash",
            f"dbosify promote {shown_notebook} {flag} '{value}' --workflow {workflow}"
            f"{queue_flag}",
            "```",
            "",
        ]
    if workflow:
        lines += [
            "Start one run by hand:",
            "",
            "```bash",
            f"dbosify start {workflow} {args_words}{queue_flag} --wait".replace("  ", " "),
            "```",
            "",
        ]
    lines += [
        f"Workflows: {', '.join(workflows) or '-'}. The database is the project's (as",
        "`dbosify --help` says: `--database`, `DBOSIFY_DATABASE_URL`, `[tool.dbosify]`, else",
        "the embedded `.dbosify/dbosify.sqlite`).",
    ]
    return "\n".join(lines) + "\n"


def _check_module(text: str, workflows: list[str], activities: list[str]) -> None:
    """Import the rendered module once, so a broken one is never written."""
    module = types.ModuleType("dbosify_promoted_check")
    try:
        exec(compile(text, "<promoted pipeline.py>", "exec"), module.__dict__)
    except Exception as err:
        raise PromotionError(f"the promoted module does not import ({type(err).__name__}: "
                             f"{err}); two cells may define one name differently", 1) from None
    found_w = set()
    found_a = set()
    for value in vars(module).values():
        if isinstance(value, type) and temporalio.workflow._Definition.from_class(value):
            found_w.add(temporalio.workflow._Definition.must_from_class(value).name)
        elif callable(value) and temporalio.activity._Definition.from_callable(value):
            found_a.add(temporalio.activity._Definition.must_from_callable(value).name)
    missing = (set(workflows) - found_w) | (set(activities) - found_a)
    if missing:
        raise PromotionError(f"in one module, a later cell hides {', '.join(sorted(missing))} "
                             "of an earlier one (one name, two meanings): rename one")


def promote_notebook(notebook: str | Path, *, cron: str | None = None,
                     every: str | None = None, workflow: str | None = None,
                     args_json: str | None = None, task_queue: str = "dbosify",
                     output: str | Path | None = None, database: str | None = None,
                     progress: Callable[[int, int], Any] | None = None) -> Promotion:
    """Promote ``notebook`` (see the module docstring). Everything is checked before anything
    is written: a bad notebook, cron string, argument list or an unreachable database raises
    :class:`PromotionError` and leaves files and schedules as they were.

    ``progress(done, total)`` is called as steps finish (reading, each cell imported, the
    module checked, the files and the schedule written).
    """
    path = Path(notebook)
    nb = read_notebook(path)
    steps = [0, len(nb.cells) + 3 + (1 if cron is not None or every is not None else 0)]

    def advance() -> None:
        steps[0] += 1
        if progress is not None:
            progress(*steps)

    advance()
    schedule: dict[str, str] | None = None
    if cron is not None and every is not None:
        raise PromotionError("give --schedule or --every, not both")
    if cron is not None:
        _check_cron(cron)
        schedule = {"cron": cron}
    elif every is not None:
        parse_every(every)
        schedule = {"every": every.strip()}
    found, acts = _cell_definitions(nb, task_queue, advance)
    workflows = sorted(found)
    activities = sorted(acts)
    if workflow is not None and workflow not in found:
        raise PromotionError(f"--workflow {workflow!r}: the notebook's %%workflow cells define "
                             f"{', '.join(workflows) or 'no workflow'}")
    if workflow is None and len(workflows) == 1:
        workflow = workflows[0]
    if schedule and workflow is None:
        raise PromotionError(
            "the notebook defines " + (f"{len(workflows)} workflows ({', '.join(workflows)})"
                                       if workflows else "no workflow")
            + ": name the one to schedule with --workflow TYPE")
    if args_json is not None:
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError as err:
            raise PromotionError(f"--args {args_json!r} is not JSON ({err}); give an array, "
                                 "e.g. '[\"2024-01-01\", 10]'") from None
        if not isinstance(args, list):
            raise PromotionError(f"--args must be a JSON array of the workflow's positional "
                                 f"arguments, not {type(args).__name__}: write '[...]'")
    elif workflow is not None and nb.parameters is not None \
            and _run_parameters(found[workflow][1]) == 1:
        args = [nb.parameters]
    else:
        args = []
    stem = path.stem
    out_dir = Path(output) if output is not None else Path("pipelines") / stem
    schedule_id = f"promoted-{stem}"
    shown_notebook = _shown(path)
    shown_module = _shown(out_dir / "pipeline.py")
    module_text = render_module(nb, shown_notebook, shown_module, workflows, activities,
                                workflow, args, task_queue, schedule_id, schedule)
    _check_module(module_text, workflows, activities)
    advance()
    readme = render_readme(stem, shown_notebook, shown_module, workflows, workflow, args,
                           task_queue, schedule_id, schedule)
    promotion = Promotion(path, out_dir, module_text, readme, workflows, activities, workflow,
                          args, task_queue, schedule_id, schedule)
    if schedule is None:
        _write(promotion)
        advance()
        return promotion
    asyncio.run(_with_schedule(promotion, database, advance))
    return promotion


def _write(promotion: Promotion) -> None:
    promotion.output.mkdir(parents=True, exist_ok=True)
    for name, text in (("pipeline.py", promotion.module_text),
                       ("README.md", promotion.readme_text)):
        target = promotion.output / name
        if target.is_file() and target.read_bytes() == text.encode():
            continue
        target.write_bytes(text.encode())
        promotion.written.append(target)


def fingerprint(promotion: Promotion) -> str:
    """A hash of what the schedule does; an unchanged one is left alone."""
    data = json.dumps({"workflow": promotion.workflow, "args": promotion.args,
                       "task_queue": promotion.task_queue, "schedule": promotion.schedule},
                      sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


async def _with_schedule(promotion: Promotion, database: str | None,
                         advance: Callable[[], None]) -> None:
    import temporalio.client
    import temporalio.converter

    from dbosify._exceptions import DatabaseError
    from dbosify._store._database import resolve_database_url
    from dbosify.client import Client

    try:
        client = await Client.connect(resolve_database_url(database).url)
    except DatabaseError as err:
        raise PromotionError(str(err), 1) from None
    try:
        # The database answers: now write, then create or update the schedule.
        _write(promotion)
        advance()
        assert promotion.schedule is not None and promotion.workflow is not None
        kind, value = next(iter(promotion.schedule.items()))
        spec = temporalio.client.ScheduleSpec(cron_expressions=[value]) if kind == "cron" \
            else temporalio.client.ScheduleSpec(
                intervals=[temporalio.client.ScheduleIntervalSpec(every=parse_every(value))])
        stamp = fingerprint(promotion)
        action = temporalio.client.ScheduleActionStartWorkflow(
            promotion.workflow, args=promotion.args, id=promotion.schedule_id,
            task_queue=promotion.task_queue, memo={MEMO_KEY: stamp})
        desired = temporalio.client.Schedule(action=action, spec=spec)
        try:
            await client.create_schedule(promotion.schedule_id, desired)
            promotion.schedule_outcome = "created"
            return
        except temporalio.client.ScheduleAlreadyRunningError:
            pass
        handle = client.get_schedule_handle(promotion.schedule_id)
        current = await handle.describe()
        memo = getattr(current.schedule.action, "memo", None) or {}
        raw = memo.get(MEMO_KEY)
        existing = None
        if raw is not None:
            try:
                existing = temporalio.converter.PayloadConverter.default.from_payloads([raw])[0]
            except Exception:
                existing = None
        if existing == stamp:
            promotion.schedule_outcome = "unchanged"
            return

        def updated(input: temporalio.client.ScheduleUpdateInput
                    ) -> temporalio.client.ScheduleUpdate:
            schedule = input.description.schedule
            schedule.spec = spec
            schedule.action = action
            return temporalio.client.ScheduleUpdate(schedule=schedule)

        await handle.update(updated)
        promotion.schedule_outcome = "updated"
    finally:
        advance()
        await client.close()

"""Temporal's schedule RPCs, answered from the database (DESIGN §9.4).

temporalio's own ``Client.create_schedule``, ``ScheduleHandle`` (``describe``, ``update``,
``pause``, ``unpause``, ``trigger``, ``backfill``, ``delete``) and ``list_schedules`` run
unchanged on these answers. Firing at due times is the workers' part
(:mod:`dbosify._runtime._scheduler`); triggers and backfills act right here, in the caller's
process, within the same kind of locked transaction.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from temporalio.api.common.v1 import Memo, SearchAttributes, WorkflowExecution
from temporalio.api.enums.v1 import ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.api.schedule.v1 import (
    Schedule,
    ScheduleActionResult,
    ScheduleInfo,
    ScheduleListEntry,
    ScheduleListInfo,
    SchedulePatch,
)
from temporalio.api.workflowservice.v1 import (
    CountSchedulesRequest,
    CountSchedulesResponse,
    CreateScheduleRequest,
    CreateScheduleResponse,
    DeleteScheduleRequest,
    DeleteScheduleResponse,
    DescribeScheduleRequest,
    DescribeScheduleResponse,
    ListScheduleMatchingTimesRequest,
    ListScheduleMatchingTimesResponse,
    ListSchedulesRequest,
    ListSchedulesResponse,
    PatchScheduleRequest,
    PatchScheduleResponse,
    StartWorkflowExecutionRequest,
    UpdateScheduleRequest,
    UpdateScheduleResponse,
)
from temporalio.converter import decode_search_attributes
from temporalio.service import RPCStatusCode

from dbosify._runtime._schedule_spec import (
    ScheduleSpecError,
    matching_times,
    next_cron_time,
    normalize_spec,
)
from dbosify._runtime._scheduler import (
    AfterCommit,
    ScheduleConflict,
    ScheduleRecord,
    drain_buffer,
    finish,
    normalized_retry_policy,
    refresh_running,
    save,
    scheduler_of,
    take,
)
from dbosify._service._errors import already_started, invalid_argument, not_found, rpc_error
from dbosify._store import _schedules as q
from dbosify._store._clock import now_ms
from dbosify._store._visibility_parse import (
    And,
    Between,
    Comparison,
    Expr,
    InList,
    IsNull,
    Not,
    Or,
    StartsWith,
    VisibilityQueryError,
    parse_query,
)

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

_PAGE = 100
_LIST_TIMES = 5
_MAX_BACKFILL = 10_000


class _Exists(Exception):
    pass


def _found(row: sa.Row[Any] | None, schedule_id: str) -> ScheduleRecord:
    """The schedule a read found, or the NOT_FOUND error Temporal answers with."""
    if row is None:
        raise not_found(f"schedule not found: {schedule_id!r}")
    return ScheduleRecord.of(row)


def _validated(schedule_id: str, schedule: Schedule) -> Schedule:
    """The schedule as Temporal's server stores it, or INVALID_ARGUMENT naming the problem."""
    if not schedule_id:
        raise invalid_argument("schedule id is not set")
    if not schedule.action.HasField("start_workflow"):
        raise invalid_argument(f"schedule {schedule_id!r} has no action: give it a "
                               "ScheduleActionStartWorkflow")
    action = schedule.action.start_workflow
    for value, what in ((action.workflow_id, "workflow id"),
                        (action.workflow_type.name, "workflow type"),
                        (action.task_queue.name, "task queue")):
        if not value:
            raise invalid_argument(f"schedule {schedule_id!r}: the action's {what} is not set")
    out = Schedule()
    out.CopyFrom(schedule)
    try:
        out.spec.CopyFrom(normalize_spec(schedule.spec))
    except ScheduleSpecError as err:
        raise invalid_argument(f"schedule {schedule_id!r}: {err}") from None
    if out.spec.HasField("start_time") and out.spec.HasField("end_time") and \
            out.spec.end_time.ToMilliseconds() < out.spec.start_time.ToMilliseconds():
        raise invalid_argument(f"schedule {schedule_id!r}: the spec ends before it starts")
    if not out.policies.overlap_policy:
        out.policies.overlap_policy = ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_SKIP
    if out.action.start_workflow.HasField("retry_policy"):
        normalized_retry_policy(out.action.start_workflow.retry_policy)
    return out


def delay_to_first_cron_time(req: StartWorkflowExecutionRequest) -> None:
    """A start with ``cron_schedule`` (Temporal's older cron) waits for the first cron time:
    set its start delay, or raise INVALID_ARGUMENT for a cron string Temporal would refuse."""
    if not req.cron_schedule:
        return
    if req.HasField("workflow_start_delay") and req.workflow_start_delay.ToMilliseconds():
        raise invalid_argument("a workflow start cannot have both a cron schedule and a start "
                               "delay; drop one of them")
    now = now_ms()
    try:
        first = next_cron_time(req.cron_schedule, now)
    except ScheduleSpecError as err:
        raise invalid_argument(f"invalid cron schedule of workflow {req.workflow_id!r}: "
                               f"{err}") from None
    req.workflow_start_delay.FromMilliseconds(max(first - now, 0))


def _ms(ts: Any) -> int:
    return int(ts.ToMilliseconds())


def apply_patch(process: Process, conn: sa.Connection, rec: ScheduleRecord,
                patch: SchedulePatch, now: int, after: AfterCommit) -> None:
    """Pause, unpause, trigger and backfill, in the caller's transaction."""
    state = rec.schedule.state
    if patch.pause:
        state.paused, state.notes = True, patch.pause
    if patch.unpause:
        state.paused, state.notes = False, patch.unpause
        if rec.next_due_ms is not None and rec.next_due_ms <= now:
            # Times that passed while paused stay unacted (a worker may not have moved on yet).
            rec.next_nominal_ms, rec.next_due_ms = rec.due_after(now)
    if patch.HasField("trigger_immediately") or len(patch.backfill_request):
        refresh_running(conn, rec)
        drain_buffer(process, conn, rec, after)
    if patch.HasField("trigger_immediately"):
        take(process, conn, rec, now, now, patch.trigger_immediately.overlap_policy, True, after)
    for backfill in patch.backfill_request:
        start, end = _ms(backfill.start_time), _ms(backfill.end_time)
        if end < start:
            raise invalid_argument("a backfill's end is before its start")
        times = matching_times(rec.spec, start, end, _MAX_BACKFILL + 1)
        if len(times) > _MAX_BACKFILL:
            raise invalid_argument(f"a backfill may cover at most {_MAX_BACKFILL} actions; "
                                   "split it into shorter ranges")
        for t in times:
            take(process, conn, rec, t, t, backfill.overlap_policy, True, after)
    rec.info.buffer_size = len(rec.buffer)


def _describe_info(conn: sa.Connection, rec: ScheduleRecord, now: int) -> ScheduleInfo:
    refresh_running(conn, rec)
    info = ScheduleInfo()
    info.CopyFrom(rec.info)
    info.buffer_size = len(rec.buffer)
    for workflow_id, run_id in rec.running:
        info.running_workflows.append(WorkflowExecution(workflow_id=workflow_id, run_id=run_id))
    info.recent_actions.extend(_recent(conn, rec))
    for t in rec.future_times(now):
        info.future_action_times.add().FromMilliseconds(t)
    return info


def _recent(conn: sa.Connection, rec: ScheduleRecord, limit: int = 10) -> list[ScheduleActionResult]:
    results = []
    for row in q.recent_actions(conn, rec.namespace, rec.schedule_id, limit):
        result = ScheduleActionResult(
            start_workflow_status=WorkflowExecutionStatus.ValueType(row.status or 0))
        result.schedule_time.FromMilliseconds(row.scheduled_ms)
        result.actual_time.FromMilliseconds(row.actual_ms)
        result.start_workflow_result.workflow_id = row.workflow_id
        result.start_workflow_result.run_id = row.run_id
        results.append(result)
    return results


# Listing queries -------------------------------------------------------------------------------

def _fields(rec: ScheduleRecord) -> dict[str, list[Any]]:
    fields: dict[str, list[Any]] = {}
    if rec.search_attributes:
        fields.update({k: list(v) for k, v in decode_search_attributes(
            SearchAttributes.FromString(rec.search_attributes)).items()})
    fields["ScheduleId"] = [rec.schedule_id]
    fields["TemporalSchedulePaused"] = [rec.schedule.state.paused]
    fields["WorkflowType"] = [rec.schedule.action.start_workflow.workflow_type.name]
    return fields


def _comparable(have: Any, want: Any) -> tuple[Any, Any]:
    if isinstance(have, datetime) and isinstance(want, str):
        parsed = datetime.fromisoformat(want.replace("Z", "+00:00"))
        return have, parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return have, want


def _compare(have: Any, op: str, want: Any) -> bool:
    try:
        a, b = _comparable(have, want)
        if op == "=":
            return bool(a == b)
        if op == "!=":
            return bool(a != b)
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)
    except (TypeError, ValueError):
        return False


def _matches(expr: Expr, fields: dict[str, list[Any]]) -> bool:
    if isinstance(expr, And):
        return all(_matches(e, fields) for e in expr.operands)
    if isinstance(expr, Or):
        return any(_matches(e, fields) for e in expr.operands)
    if isinstance(expr, Not):
        return not _matches(expr.operand, fields)
    values = fields.get(expr.field.name, [])
    if isinstance(expr, IsNull):
        return bool(values) if expr.negated else not values
    if isinstance(expr, Comparison):
        return any(_compare(v, expr.op, expr.value.value) for v in values)
    if isinstance(expr, InList):
        found = any(_compare(v, "=", w.value) for v in values for w in expr.values)
        return found != expr.negated
    if isinstance(expr, Between):
        inside = any(_compare(v, ">=", expr.low.value) and _compare(v, "<=", expr.high.value)
                     for v in values)
        return inside != expr.negated
    if isinstance(expr, StartsWith):
        starts = any(isinstance(v, str) and v.startswith(str(expr.prefix.value))
                     for v in values)
        return starts != expr.negated
    return False  # pragma: no cover - the parser makes no other node


def _filter(query: str) -> Expr | None:
    try:
        parsed = parse_query(query)
    except VisibilityQueryError as err:
        raise invalid_argument(str(err)) from None
    if parsed.order_by or parsed.group_by:
        raise invalid_argument("schedule lists take a filter only (no ORDER BY or GROUP BY)")
    return parsed.where


def _matching(process: Process, namespace: str, query: str) -> list[ScheduleRecord]:
    where = _filter(query)
    with process.store.engine.connect() as conn:
        rows = q.list_all(conn, namespace)
    recs = [ScheduleRecord.of(r) for r in rows]
    if where is not None:
        recs = [r for r in recs if _matches(where, _fields(r))]
    return recs


class ScheduleService:
    """The schedule RPCs of :class:`dbosify._service._service.DatabaseService`."""

    process: Process

    def _after(self, after: AfterCommit) -> None:
        finish(self.process, after)
        if self.process.workers:
            scheduler_of(self.process).wake()

    async def _rpc_create_schedule(self, req: CreateScheduleRequest,
                                   _timeout: float | None) -> CreateScheduleResponse:
        schedule = _validated(req.schedule_id, req.schedule)
        process = self.process
        namespace = req.namespace or "default"

        def write() -> tuple[AfterCommit, int]:
            after = AfterCommit()
            with process.store.engine.begin() as conn:
                existing = q.lock(conn, namespace, req.schedule_id)
                if existing is not None:
                    if req.request_id and existing.request_id == req.request_id:
                        return after, int(existing.version)  # A retried create.
                    raise _Exists
                now = now_ms()
                info = ScheduleInfo()
                info.create_time.FromMilliseconds(now)
                rec = ScheduleRecord(
                    namespace=namespace, schedule_id=req.schedule_id, schedule=schedule,
                    info=info, running=[], buffer=[], next_nominal_ms=None, next_due_ms=None,
                    version=1,
                    memo=req.memo.SerializeToString() if req.HasField("memo") else None,
                    search_attributes=req.search_attributes.SerializeToString()
                    if req.HasField("search_attributes") else None,
                    request_id=req.request_id or None)
                rec.next_nominal_ms, rec.next_due_ms = rec.due_after(now)
                if req.HasField("initial_patch"):
                    apply_patch(process, conn, rec, req.initial_patch, now, after)
                q.insert(conn, {"namespace": namespace, "schedule_id": req.schedule_id,
                                "request_id": rec.request_id, "version": 1, **rec.values()})
            return after, 1

        try:
            after, version = await process.db_call(write)
        except (_Exists, sa.exc.IntegrityError):
            raise already_started(f"schedule {req.schedule_id!r} already exists (delete it "
                                  "first, or use another id)", "", req.request_id) from None
        self._after(after)
        return CreateScheduleResponse(conflict_token=str(version).encode())

    async def _locked_change(self, namespace: str, schedule_id: str, change: Any) -> None:
        process = self.process

        def write() -> AfterCommit:
            after = AfterCommit()
            with process.store.engine.begin() as conn:
                rec = _found(q.lock(conn, namespace or "default", schedule_id), schedule_id)
                change(conn, rec, now_ms(), after)
                save(conn, rec)
            return after

        for _ in range(5):
            try:
                after = await process.db_call(write)
                break
            except ScheduleConflict:
                continue
        else:
            raise rpc_error(RPCStatusCode.ABORTED,
                            f"schedule {schedule_id!r} kept changing while being written; retry")
        self._after(after)

    async def _rpc_describe_schedule(self, req: DescribeScheduleRequest,
                                     _timeout: float | None) -> DescribeScheduleResponse:
        process = self.process

        def read() -> DescribeScheduleResponse:
            with process.store.engine.connect() as conn:
                rec = _found(q.get(conn, req.namespace or "default", req.schedule_id),
                             req.schedule_id)
                response = DescribeScheduleResponse(
                    schedule=rec.schedule, info=_describe_info(conn, rec, now_ms()),
                    conflict_token=str(rec.version).encode())
            if rec.memo:
                response.memo.CopyFrom(Memo.FromString(rec.memo))
            if rec.search_attributes:
                response.search_attributes.CopyFrom(
                    SearchAttributes.FromString(rec.search_attributes))
            return response

        return await process.db_call(read)

    async def _rpc_update_schedule(self, req: UpdateScheduleRequest,
                                   _timeout: float | None) -> UpdateScheduleResponse:
        schedule = _validated(req.schedule_id, req.schedule)

        def change(conn: sa.Connection, rec: ScheduleRecord, now: int,
                   after: AfterCommit) -> None:
            if req.conflict_token and req.conflict_token != str(rec.version).encode():
                raise rpc_error(RPCStatusCode.FAILED_PRECONDITION,
                                f"schedule {rec.schedule_id!r} changed since it was described "
                                "(conflict token mismatch); describe it again")
            rec.schedule = schedule
            rec._spec = None
            if req.HasField("memo"):
                rec.memo = req.memo.SerializeToString()
            if req.HasField("search_attributes"):
                rec.search_attributes = req.search_attributes.SerializeToString()
            rec.info.update_time.FromMilliseconds(now)
            rec.next_nominal_ms, rec.next_due_ms = rec.due_after(now)
            refresh_running(conn, rec)
            drain_buffer(self.process, conn, rec, after)

        await self._locked_change(req.namespace, req.schedule_id, change)
        return UpdateScheduleResponse()

    async def _rpc_patch_schedule(self, req: PatchScheduleRequest,
                                  _timeout: float | None) -> PatchScheduleResponse:
        def change(conn: sa.Connection, rec: ScheduleRecord, now: int,
                   after: AfterCommit) -> None:
            apply_patch(self.process, conn, rec, req.patch, now, after)
            if req.patch.pause or req.patch.unpause:
                rec.info.update_time.FromMilliseconds(now)

        await self._locked_change(req.namespace, req.schedule_id, change)
        return PatchScheduleResponse()

    async def _rpc_delete_schedule(self, req: DeleteScheduleRequest,
                                   _timeout: float | None) -> DeleteScheduleResponse:
        process = self.process

        def write() -> bool:
            with process.store.engine.begin() as conn:
                return q.delete(conn, req.namespace or "default", req.schedule_id)

        if not await process.db_call(write):
            raise not_found(f"schedule not found: {req.schedule_id!r}")
        return DeleteScheduleResponse()

    async def _rpc_list_schedules(self, req: ListSchedulesRequest,
                                  _timeout: float | None) -> ListSchedulesResponse:
        process = self.process
        size = req.maximum_page_size if req.maximum_page_size > 0 else _PAGE
        offset = int(req.next_page_token.decode() or 0) if req.next_page_token else 0

        def read() -> ListSchedulesResponse:
            recs = _matching(process, req.namespace or "default", req.query)
            page = recs[offset:offset + size]
            response = ListSchedulesResponse()
            now = now_ms()
            with process.store.engine.connect() as conn:
                for rec in page:
                    entry = ScheduleListEntry(schedule_id=rec.schedule_id)
                    if rec.memo:
                        entry.memo.CopyFrom(Memo.FromString(rec.memo))
                    if rec.search_attributes:
                        entry.search_attributes.CopyFrom(
                            SearchAttributes.FromString(rec.search_attributes))
                    info = ScheduleListInfo(
                        spec=rec.schedule.spec,
                        workflow_type=rec.schedule.action.start_workflow.workflow_type,
                        notes=rec.schedule.state.notes, paused=rec.schedule.state.paused)
                    info.recent_actions.extend(_recent(conn, rec, _LIST_TIMES))
                    for t in rec.future_times(now, _LIST_TIMES):
                        info.future_action_times.add().FromMilliseconds(t)
                    entry.info.CopyFrom(info)
                    response.schedules.append(entry)
            if offset + size < len(recs):
                response.next_page_token = str(offset + size).encode()
            return response

        return await process.db_call(read)

    async def _rpc_count_schedules(self, req: CountSchedulesRequest,
                                   _timeout: float | None) -> CountSchedulesResponse:
        process = self.process

        def read() -> CountSchedulesResponse:
            recs = _matching(process, req.namespace or "default", req.query)
            return CountSchedulesResponse(count=len(recs))

        return await process.db_call(read)

    async def _rpc_list_schedule_matching_times(
            self, req: ListScheduleMatchingTimesRequest, _timeout: float | None
    ) -> ListScheduleMatchingTimesResponse:
        process = self.process

        def read() -> ListScheduleMatchingTimesResponse:
            with process.store.engine.connect() as conn:
                row = q.get(conn, req.namespace or "default", req.schedule_id)
            rec = _found(row, req.schedule_id)
            response = ListScheduleMatchingTimesResponse()
            for t in matching_times(rec.spec, _ms(req.start_time), _ms(req.end_time), 1000):
                response.start_time.add().FromMilliseconds(t)
            return response

        return await process.db_call(read)

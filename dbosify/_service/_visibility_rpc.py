"""``ListWorkflowExecutions`` and ``CountWorkflowExecutions`` over the visibility tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from temporalio.api.common.v1 import Payload
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    CountWorkflowExecutionsResponse,
    ListWorkflowExecutionsRequest,
    ListWorkflowExecutionsResponse,
)

from dbosify._service._describe import execution_info
from dbosify._service._errors import invalid_argument
from dbosify._store import _tables as t
from dbosify._store._visibility import (
    CompiledFilter,
    VisibilityQueryError,
    compile_filter,
    execution_status_name,
    referenced_attributes,
)

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

_DEFAULT_PAGE = 100


def _compile(process: Process, query: str) -> CompiledFilter:
    try:
        names = referenced_attributes(query)
        types: dict[str, str] = {}
        if names:
            sat = t.search_attributes
            with process.store.engine.connect() as conn:
                for name, kind in conn.execute(
                        sa.select(sat.c.name, sat.c.type).where(sat.c.name.in_(sorted(names)))
                        .distinct()):
                    types.setdefault(name, kind)
        return compile_filter(query, types)
    except VisibilityQueryError as err:
        raise invalid_argument(str(err)) from None


def _list(process: Process, req: ListWorkflowExecutionsRequest) -> ListWorkflowExecutionsResponse:
    compiled = _compile(process, req.query)
    if compiled.group_by:
        raise invalid_argument("GROUP BY is only allowed in a count query")
    size = req.page_size if req.page_size > 0 else _DEFAULT_PAGE
    offset = int(req.next_page_token.decode() or 0) if req.next_page_token else 0
    stmt = (sa.select(t.runs)
            .where(t.runs.c.namespace == (req.namespace or "default"), compiled.where)
            .order_by(*compiled.order_by).offset(offset).limit(size + 1))
    with process.store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    page = rows[:size]
    attrs = process.store.search_attributes_of([r.run_id for r in page])
    response = ListWorkflowExecutionsResponse(
        executions=[execution_info(r, attrs[r.run_id]) for r in page])
    if len(rows) > size:
        response.next_page_token = str(offset + size).encode()
    return response


def _count(process: Process, req: CountWorkflowExecutionsRequest) -> CountWorkflowExecutionsResponse:
    compiled = _compile(process, req.query)
    where: list[Any] = [t.runs.c.namespace == (req.namespace or "default"), compiled.where]
    response = CountWorkflowExecutionsResponse()
    with process.store.engine.connect() as conn:
        if not compiled.group_by:
            response.count = conn.execute(
                sa.select(sa.func.count()).select_from(t.runs).where(*where)).scalar() or 0
            return response
        rows = conn.execute(sa.select(t.runs.c.status, sa.func.count()).where(*where)
                            .group_by(t.runs.c.status).order_by(t.runs.c.status)).all()
    for status, count in rows:
        group = response.groups.add(count=count)
        group.group_values.append(Payload(
            metadata={"encoding": b"json/plain"},
            data=f'"{execution_status_name(status)}"'.encode()))
        response.count += count
    return response


async def list_runs(process: Process,
                    req: ListWorkflowExecutionsRequest) -> ListWorkflowExecutionsResponse:
    """One page of runs matching a visibility query."""
    return await process.db_call(_list, process, req)


async def count_runs(process: Process,
                     req: CountWorkflowExecutionsRequest) -> CountWorkflowExecutionsResponse:
    """How many runs match a visibility query (optionally grouped by status)."""
    return await process.db_call(_count, process, req)

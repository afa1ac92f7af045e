"""Temporal RPC errors, with the status details temporalio's client turns into its exceptions."""

from __future__ import annotations

from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.message import Message
from temporalio.api.common.v1 import GrpcStatus
from temporalio.api.errordetails.v1 import WorkflowExecutionAlreadyStartedFailure
from temporalio.service import RPCError, RPCStatusCode


def rpc_error(status: RPCStatusCode, message: str, *details: Message) -> RPCError:
    """An RPCError as a Temporal server would send it (status, message, typed details)."""
    grpc = GrpcStatus(code=int(status), message=message)
    for detail in details:
        packed = AnyProto()
        packed.Pack(detail)
        grpc.details.append(packed)
    return RPCError(message, status, grpc.SerializeToString())


def not_found(message: str) -> RPCError:
    """NOT_FOUND: an unknown workflow or run."""
    return rpc_error(RPCStatusCode.NOT_FOUND, message)


def invalid_argument(message: str) -> RPCError:
    """INVALID_ARGUMENT: the request is malformed (the message says how)."""
    return rpc_error(RPCStatusCode.INVALID_ARGUMENT, message)


def already_started(message: str, run_id: str, request_id: str = "") -> RPCError:
    """ALREADY_EXISTS with the detail temporalio maps to ``WorkflowAlreadyStartedError``."""
    detail = WorkflowExecutionAlreadyStartedFailure(start_request_id=request_id, run_id=run_id)
    return rpc_error(RPCStatusCode.ALREADY_EXISTS, message, detail)

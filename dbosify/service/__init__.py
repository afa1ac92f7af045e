"""Temporal's service layer, with ``temporalio.service``'s names.

Everything here is temporalio's own object (``dbosify.service.RPCError is
temporalio.service.RPCError``, so ``except RPCError`` clauses keep working), except
:class:`ServiceClient`, whose ``connect`` opens the database instead of a gRPC connection
(a subclass of temporalio's: the service clients dbosify makes are instances of both).
``Client.connect`` does this for you; ``ServiceClient.connect`` is for code that builds its
``Client(service, ...)`` itself.

The raw RPC classes (``WorkflowService``, ``OperatorService`` ...) are temporalio's: the calls a
``Client`` makes through ``client.workflow_service`` reach dbosify's database service, which
answers the RPCs a Temporal program needs (starts, signals, queries, updates, histories,
visibility, schedules) and refuses the others with ``RPCError`` (``UNIMPLEMENTED``).
"""

from temporalio.service import (
    LOG_PROTOS,
    CloudService,
    ConnectConfig,
    DnsLoadBalancingConfig,
    GrpcCompression,
    HealthService,
    HttpConnectProxyConfig,
    KeepAliveConfig,
    OperatorService,
    PayloadLimitsConfig,
    RetryConfig,
    RPCError,
    RPCStatusCode,
    ServiceRequest,
    ServiceResponse,
    TestService,
    TLSConfig,
    WorkflowService,
    logger,
)

from dbosify.service._client import ServiceClient

__all__ = [
    "LOG_PROTOS",
    "CloudService",
    "ConnectConfig",
    "DnsLoadBalancingConfig",
    "GrpcCompression",
    "HealthService",
    "HttpConnectProxyConfig",
    "KeepAliveConfig",
    "OperatorService",
    "PayloadLimitsConfig",
    "RPCError",
    "RPCStatusCode",
    "RetryConfig",
    "ServiceClient",
    "ServiceRequest",
    "ServiceResponse",
    "TLSConfig",
    "TestService",
    "WorkflowService",
    "logger",
]

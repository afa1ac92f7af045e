"""The randomness seed Temporal's Core gives a run, so a replay sees the same ``workflow.random()``.

On replay, temporalio's ``Replayer`` does not read a seed from the history: Core derives it from
the run's ``original_execution_run_id`` (``str_to_randomness_seed`` in Core's
``workflow_machines.rs``: SipHash-1-3 with zero keys over the id's UTF-8 bytes and a ``0xff``
terminator, which is how Rust's ``Hash for str`` feeds a hasher). A run seeded any other way
replays ``workflow.random()``, ``workflow.uuid4()`` and everything that depends on them
differently, so its history is not accepted by the ``Replayer`` once the code branches on them.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def _siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    tail_start = len(data) - len(data) % 8
    for i in range(0, tail_start, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
    last = int.from_bytes(data[tail_start:], "little") | ((len(data) & 0xFF) << 56)
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def core_randomness_seed(original_execution_run_id: str) -> int:
    """The ``randomness_seed`` Core puts in a run's ``InitializeWorkflow`` job.

    The engine must seed a run with this value (for a continued-as-new run: of the new run's own
    id) for its history to replay under temporalio's ``Replayer`` when the workflow uses
    ``workflow.random()`` or ``workflow.uuid4()``.
    """
    return _siphash13(original_execution_run_id.encode("utf-8") + b"\xff")

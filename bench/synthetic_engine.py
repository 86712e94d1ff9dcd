"""A stand-in for vLLM's engine core that produces tokens without a model, for the front-end
ceiling harness only (never a serving mode).

It speaks the engine core's side of vLLM's ZMQ protocol, as `EngineCoreProc` does: a DEALER
per front end that says ready, then receives msgpack `EngineCoreRequest`s, aborts and utility
calls; a PUSH per front end that carries `EngineCoreOutputs`. Each step gives every running
request its next token from a fixed text, up to its `max_tokens`. So the front ends run
exactly their production code (ZMQ, msgpack, output processor, detokenizer, HTTP) with an
engine that is never the bottleneck.

Pacing: a step is sent only while the tokens sent but not yet received by the load client
(a counter it shares) stay under `LAG_STEPS` steps' worth, so every token travels as its own
SSE event, as with a GPU engine whose front end keeps up. With one step's worth the engine
sends the next step as the client starts receiving the last one: 1.01 tokens per event
(two steps' worth let the front end take two steps at once: 1.5-1.7 tokens per event). While
it waits on the client it polls every millisecond, as the client's progress is no ZMQ message.

The client credits tokens as their text arrives (`sse_load`), merged or not; whatever it
could not credit reaches the counter with the usage chunk when the request ends. When the
client has received nothing for `stall_s`, the engine steps anyway, so a miscount can slow
a run but never hang it (it did, with two front ends at 256 streams, before tokens were
credited by their text).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# How many steps' worth of tokens the client may still be owed when the engine steps.
LAG_STEPS = 1


@dataclass
class RunningRequest:
    request_id: str
    client_index: int
    remaining: int
    position: int = 0


class Pacer:
    """When the engine may send its next step (see Pacing above)."""

    def __init__(self, lag_steps: int, stall_s: float, clock: Any = time.monotonic) -> None:
        self.lag_steps = lag_steps
        self.stall_s = stall_s
        self.clock = clock
        self.last_received = 0
        self.progress_at = clock()

    def may_step(self, sent: int, received: int, running: int) -> bool:
        now = self.clock()
        if received != self.last_received:
            self.last_received, self.progress_at = received, now
        if not running:
            return False
        if sent - received < self.lag_steps * running:
            return True
        if now - self.progress_at > self.stall_s:
            self.progress_at = now  # one step per stall: its tokens show whether it was one
            return True
        return False


def run_synthetic_engine(
    input_addresses: Sequence[str],
    output_addresses: Sequence[str],
    token_ids: Sequence[int],
    received_tokens: Any,
    lag_steps: int = LAG_STEPS,
    stall_s: float = 0.05,
) -> None:
    """The engine process' main loop (a spawned process; returns when its parent dies)."""
    import os

    import zmq
    from vllm.v1.engine import (
        EngineCoreOutput,
        EngineCoreOutputs,
        EngineCoreRequest,
        EngineCoreRequestType,
        FinishReason,
        UtilityOutput,
        UtilityResult,
    )
    from vllm.v1.serial_utils import MsgpackDecoder, MsgpackEncoder

    parent = os.getppid()
    ctx = zmq.Context()
    identity = (0).to_bytes(2, "little")  # engine rank 0, as the front ends expect
    inputs = []
    for address in input_addresses:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(address)
        sock.send(b"")  # the ready message (an empty payload: no post-init config changes)
        inputs.append(sock)
    outputs = []
    for address in output_addresses:
        sock = ctx.socket(zmq.PUSH)
        sock.connect(address)
        outputs.append(sock)
    poller = zmq.Poller()
    for sock in inputs:
        poller.register(sock, zmq.POLLIN)
    add_decoder = MsgpackDecoder(EngineCoreRequest)
    generic_decoder = MsgpackDecoder()
    encoder = MsgpackEncoder()
    running: dict[str, RunningRequest] = {}
    sent_tokens = 0
    ADD, ABORT, UTILITY = (
        EngineCoreRequestType.ADD.value,
        EngineCoreRequestType.ABORT.value,
        EngineCoreRequestType.UTILITY.value,
    )
    utility_results = {"get_supported_tasks": ("generate",), "is_sleeping": False}

    def send(client_index: int, message: Any) -> None:
        outputs[client_index].send_multipart(encoder.encode(message), copy=False)

    pacer = Pacer(lag_steps, stall_s)
    while True:
        can_step = pacer.may_step(sent_tokens, received_tokens.value, len(running))
        # Waiting on the client (running requests) is a short poll: the client's progress is
        # no ZMQ message and would otherwise wait out the whole timeout.
        events = poller.poll(0 if can_step else (1 if running else 50))
        if not events and not running and os.getppid() != parent:
            return
        for sock, _ in events:
            while sock.poll(0):
                type_frame, *frames = sock.recv_multipart(copy=False)
                kind = bytes(type_frame.buffer)
                if kind == ADD:
                    request = add_decoder.decode(frames)
                    max_tokens = request.sampling_params.max_tokens or 16
                    running[request.request_id] = RunningRequest(
                        request.request_id, request.client_index, max_tokens
                    )
                elif kind == ABORT:
                    for request_id in generic_decoder.decode(frames):
                        running.pop(request_id, None)
                elif kind == UTILITY:
                    client_index, call_id, method, _args = generic_decoder.decode(frames)
                    result = UtilityResult(utility_results.get(method))
                    send(
                        client_index,
                        EngineCoreOutputs(utility_output=UtilityOutput(call_id, result=result)),
                    )
        if not can_step:
            continue
        per_client: dict[int, list[Any]] = {}
        for request in list(running.values()):
            token = token_ids[request.position % len(token_ids)]
            request.position += 1
            request.remaining -= 1
            finished = request.remaining <= 0
            per_client.setdefault(request.client_index, []).append(
                EngineCoreOutput(
                    request_id=request.request_id,
                    new_token_ids=[token],
                    finish_reason=FinishReason.LENGTH if finished else None,
                )
            )
            if finished:
                del running[request.request_id]
        for client_index, step in per_client.items():
            send(client_index, EngineCoreOutputs(outputs=step))
            sent_tokens += len(step)

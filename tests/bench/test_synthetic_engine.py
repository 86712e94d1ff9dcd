"""The synthetic engine's pacing: ahead of the client by at most `lag_steps` steps, never stuck."""

from __future__ import annotations

from bench.synthetic_engine import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_steps_while_the_client_is_less_than_lag_steps_behind() -> None:
    pacer = Pacer(lag_steps=2, stall_s=0.05, clock=Clock())
    assert pacer.may_step(sent=0, received=0, running=4)
    assert pacer.may_step(sent=7, received=0, running=4)
    assert not pacer.may_step(sent=8, received=0, running=4)
    assert pacer.may_step(sent=8, received=1, running=4)


def test_no_step_without_running_requests() -> None:
    assert not Pacer(lag_steps=2, stall_s=0.05, clock=Clock()).may_step(0, 0, running=0)


def test_a_client_owing_merged_tokens_does_not_stall_the_engine_forever() -> None:
    """The client counts tokens merged into one event only when their request ends: "received"
    can stay short while nothing is in flight. After `stall_s` without progress, one step."""
    clock = Clock()
    pacer = Pacer(lag_steps=2, stall_s=0.05, clock=clock)
    assert not pacer.may_step(sent=600, received=80, running=256)
    clock.now = 0.04
    assert not pacer.may_step(sent=600, received=80, running=256)
    clock.now = 0.06
    assert pacer.may_step(sent=600, received=80, running=256)
    # One step per stall: the next waits for progress or another stall.
    assert not pacer.may_step(sent=856, received=80, running=256)
    clock.now = 0.08
    assert not pacer.may_step(sent=856, received=300, running=256)
    clock.now = 0.2
    assert pacer.may_step(sent=856, received=300, running=256)

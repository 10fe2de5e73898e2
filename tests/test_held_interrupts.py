"""A Ctrl-C inside held_interrupts() waits for the block's end (lab.host.held_interrupts)."""

import os
import signal

import pytest

from lab.host.held_interrupts import held_interrupts


def test_a_ctrl_c_inside_is_raised_once_the_steps_are_whole():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with held_interrupts():
            steps.append("made")
            os.kill(os.getpid(), signal.SIGINT)     # delivered now: Python runs handlers between bytecodes
            steps.append("noted")
    assert steps == ["made", "noted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler    # the learner's Ctrl-C is back


def test_a_held_ctrl_c_can_be_left_to_the_caller():
    with held_interrupts(then_raise=False) as held:
        os.kill(os.getpid(), signal.SIGINT)
        assert held.interrupted
    assert held.interrupted


def test_without_a_ctrl_c_nothing_is_raised_and_an_error_inside_goes_through():
    with held_interrupts() as held:
        pass
    assert not held.interrupted
    with pytest.raises(ValueError):
        with held_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("the step's own failure is what the caller must see")

"""Signals held while a finished run is recorded: delivered afterwards, never in between."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.service.worker import HeldSignals


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt), and SIGINT not blocked, for the test: HeldSignals hands a
    held signal to whatever disposition it found, and a pytest-xdist worker process (where CI saw the held SIGINT
    never arrive) need not run under those."""
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    signal.signal(signal.SIGINT, found)


@pytest.mark.usefixtures("default_sigint")
def test_interrupt_while_recording_is_delivered_after() -> None:
    before = signal.getsignal(signal.SIGINT)
    hold = HeldSignals()
    hold.start()
    signal.raise_signal(signal.SIGINT)  # to this thread: Python runs the handler before the next statement
    recorded = True  # still running: the interrupt is held
    with pytest.raises(KeyboardInterrupt):
        hold.stop()
    assert recorded and signal.getsignal(signal.SIGINT) is before  # the handler it found is back


@pytest.mark.usefixtures("default_sigint")
def test_second_interrupt_breaks_through() -> None:
    before = signal.getsignal(signal.SIGINT)
    hold = HeldSignals()
    hold.start()
    signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    hold.stop()  # nothing more to deliver: the interrupt already took effect
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.usefixtures("default_sigint")
def test_a_third_interrupt_is_held_again_and_delivered_after() -> None:
    """After the second signal broke through, holding starts over: a third is held while the abandoned run is given
    back, and delivered when that ends."""
    hold = HeldSignals()
    hold.start()
    signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGINT)  # held again, not raised here
    released = True
    with pytest.raises(KeyboardInterrupt):
        hold.stop()
    assert released


@pytest.mark.usefixtures("default_sigint")
def test_starting_twice_still_restores_the_handlers_it_found() -> None:
    """A second start() while holding changes nothing: stop() puts back the handlers the first one found (not the
    holding handler itself, which would then hold every later Ctrl-C for ever)."""
    before = {s: signal.getsignal(s) for s in HeldSignals.SIGNALS}
    hold = HeldSignals()
    hold.start()
    hold.start()
    hold.stop()
    assert {s: signal.getsignal(s) for s in HeldSignals.SIGNALS} == before


@pytest.mark.usefixtures("default_sigint")
def test_holding_can_start_again_after_a_stop() -> None:
    """One HeldSignals may hold, deliver and hold again: stop() leaves it ready for the next start()."""
    before = signal.getsignal(signal.SIGINT)
    hold = HeldSignals()
    for _ in range(2):
        hold.start()
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            hold.stop()
        assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_signals_are_left_alone() -> None:
    """Only the main thread may set handlers: in another thread start() and stop() do nothing, without an error."""
    before = {s: signal.getsignal(s) for s in HeldSignals.SIGNALS}
    errors: list[BaseException] = []

    def hold_and_release() -> None:
        try:
            hold = HeldSignals()
            hold.start()
            hold.stop()
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    thread = threading.Thread(target=hold_and_release)
    thread.start()
    thread.join()
    assert errors == [] and {s: signal.getsignal(s) for s in HeldSignals.SIGNALS} == before


def test_cli_in_process_leaves_the_callers_handlers(tmp_path: Path) -> None:
    """`bench run`/`worker` install stop handlers for their own lifetime only (bench.cli.main called from a
    notebook, a test or the API must hand the caller's handlers back)."""
    from bench.cli import main
    from tests.conftest import tiny_spec

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    code = main(["worker", str(tiny_spec(tmp_path)), "--storage", f"sqlite:///{tmp_path / 'none.db'}"])
    assert code == 2  # not initialised: refused after the handlers were installed
    assert {s: signal.getsignal(s) for s in before} == before

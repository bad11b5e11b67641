"""Requests that fail or are cancelled part way, and requests run in two threads at once: what every family's
state tests put the shared model through."""

from __future__ import annotations

import threading

import pytest

import stg


def cancel_at_step_2(step, total):
    """A progress callback that cancels the run at its second step, as the page's Stop does."""
    if step == 2:
        raise stg.Cancelled()


def fail_then_cancel(fault_handle, failing, cancelled) -> None:
    """failing() must raise the fault its hook (fault_handle, removed afterwards) injects; then cancelled(callback)
    must be cancelled by that callback."""
    try:
        with pytest.raises(RuntimeError, match="fault injected"):
            failing()
    finally:
        fault_handle.remove()
    with pytest.raises(stg.Cancelled):
        cancelled(cancel_at_step_2)


def in_two_threads(work) -> list:
    """work(0) and work(1), each twice, in two threads that start together; the last result of each."""
    results, errors, barrier = [None, None], [], threading.Barrier(2)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(2):
                results[i] = work(i)
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results

"""Worker processes for a file's pieces: results in order, Ctrl-C left to the command, never more
workers than pieces, and the work done here where no worker process can be made."""

from __future__ import annotations

import concurrent.futures
import os
import signal

import pytest

from dsl_compress.language import worker_pool


def squared_with_pid(item: int, offset: int) -> tuple[int, int]:
    return item * item + offset, os.getpid()


def interrupt_handler(item: int) -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_results_come_in_order_with_the_shared_arguments(jobs: int):
    found = list(worker_pool.mapped(squared_with_pid, range(20), jobs, 5))
    assert [value for value, _ in found] == [i * i + 5 for i in range(20)]
    in_workers = any(pid != os.getpid() for _, pid in found)
    assert in_workers == (jobs > 1)


def test_workers_leave_ctrl_c_to_the_command():
    assert list(worker_pool.mapped(interrupt_handler, range(4), 2)) == [True] * 4
    assert signal.getsignal(signal.SIGINT) != signal.SIG_IGN  # this process's is untouched


def test_never_more_workers_than_items(monkeypatch):
    sizes = []
    real = concurrent.futures.ProcessPoolExecutor

    def recording(max_workers, **options):
        sizes.append(max_workers)
        return real(max_workers, **options)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", recording)
    assert [v for v, _ in worker_pool.mapped(squared_with_pid, [3, 4], 16, 0)] == [9, 16]
    assert sizes == [2]
    assert [v for v, _ in worker_pool.mapped(squared_with_pid, [7], 16, 0)] == [49]
    assert sizes == [2]  # one item: no pool at all


@pytest.mark.parametrize("where", ["pool", "start"])
def test_without_worker_processes_the_work_is_done_here(monkeypatch, where: str):
    real = concurrent.futures.ProcessPoolExecutor

    class NoProcesses(real):
        def __init__(self, *args, **options):
            if where == "pool":
                raise OSError(38, "Function not implemented")  # no POSIX semaphores
            super().__init__(*args, **options)

        def map(self, *args, **options):
            raise OSError(11, "Resource temporarily unavailable")  # fork failed

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoProcesses)
    found = list(worker_pool.mapped(squared_with_pid, range(6), 4, 1))
    assert found == [(i * i + 1, os.getpid()) for i in range(6)]


def test_workers_started_before_one_fails_to_start_are_stopped(monkeypatch):
    import multiprocessing
    import multiprocessing.context

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the pool starts its workers by fork only where fork is")
    real, started = multiprocessing.context.ForkProcess.start, []

    def second_fails(process):
        if len(started) == 1:
            raise OSError(11, "Resource temporarily unavailable")
        started.append(process)
        return real(process)

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", second_fails)
    found = list(worker_pool.mapped(squared_with_pid, range(6), 3, 2))
    assert found == [(i * i + 2, os.getpid()) for i in range(6)]
    assert len(started) == 1 and not started[0].is_alive()  # the first worker was stopped


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 2), (64, 8)])
def test_the_commands_default_jobs_are_the_usable_cpus_at_most_eight(monkeypatch, cpus, expected):
    from dsl_compress.cli.args import parse_arguments

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    for command in (["fmt", "a.rules"], ["lint", "a.rules"]):
        assert parse_arguments(command).jobs == expected
    assert parse_arguments(["lint", "--jobs", "3", "a.rules"]).jobs == 3


def test_workers_start_before_the_last_item_is_made():
    import multiprocessing

    workers_at_last_item = []

    def items():
        for i in range(6):
            if i == 5:
                workers_at_last_item.append(len(multiprocessing.active_children()))
            yield i

    found = list(worker_pool.mapped(squared_with_pid, items(), 2, 0))
    assert [value for value, _ in found] == [i * i for i in range(6)]
    assert workers_at_last_item[0] >= 1  # the pool was working while items were made


def test_items_a_failed_pool_took_are_worked_here(monkeypatch):
    real = concurrent.futures.ProcessPoolExecutor

    class FailsAtThirdItem(real):
        def map(self, function, items):
            items = iter(items)
            taken = [next(items) for _ in range(3)]
            assert taken == [0, 1, 2]
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", FailsAtThirdItem)
    found = list(worker_pool.mapped(squared_with_pid, iter(range(7)), 2, 3))
    assert found == [(i * i + 3, os.getpid()) for i in range(7)]

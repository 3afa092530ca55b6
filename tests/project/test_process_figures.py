"""The /proc readings the load test and the benchmarks report (tests/support/processes.py): a busy child process
counts with its parent only when asked, a process group is found whole, and wake-ups and the machine's busy time
move with what was done."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import (
    child_pids,
    cpu_by_process,
    cpu_seconds,
    cpu_used_between,
    group_pids,
    machine_busy_seconds,
    named_pids,
    process_tree,
    system_cpu_seconds,
    wakeups,
)

# Burns 0.3 s of its own CPU, says so, then waits for its stdin to close; with an argument, starts one more of itself
# first (a grandchild, which says nothing), in the same process group.
CHILD = """
import subprocess, sys, time
if len(sys.argv) > 1:
    subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
while time.process_time() < 0.3:
    pass
print("busy", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def busy_child():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert child.stdout.readline() == b"busy\n"
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # the child and its grandchild
        child.wait()


def test_a_child_counts_with_its_parent_only_in_the_tree(busy_child):
    own = os.getpid()
    assert busy_child.pid in process_tree(own)
    assert cpu_seconds(own, tree=True) - cpu_seconds(own, tree=False) >= 0.25
    assert cpu_seconds(busy_child.pid, tree=False) >= 0.25


def test_a_process_group_is_found_whole_and_apart_from_ours(busy_child):
    deadline = time.monotonic() + 10
    while len(group_pids(busy_child.pid)) < 2 and time.monotonic() < deadline:  # the grandchild starting
        time.sleep(0.05)
    members = group_pids(busy_child.pid)
    assert busy_child.pid in members and len(members) == 2
    assert set(members) == set(process_tree(busy_child.pid))
    assert child_pids(busy_child.pid) == [pid for pid in members if pid != busy_child.pid]  # the grandchild
    assert os.getpid() not in members


def test_a_process_seen_only_in_the_later_reading_counts_whole_and_an_ended_one_not_at_all(busy_child):
    before = cpu_by_process(os.getpid())
    after = cpu_by_process(os.getpid(), busy_child.pid, 999_999_999)  # no such process
    assert set(after) == {os.getpid(), busy_child.pid}
    assert cpu_used_between(before, after) >= 0.25  # the child's whole CPU
    own = os.getpid()
    assert cpu_used_between(after, before) == before[own] - after[own]  # the child gone: nothing of it counts


def test_processes_are_found_by_name():
    name = Path("/proc/self/comm").read_text().strip()
    assert os.getpid() in named_pids(name)
    assert os.getpid() not in named_pids("no-such-command")


def test_system_time_is_part_of_the_cpu_time():
    own = os.getpid()
    for _ in range(20_000):
        os.stat("/")  # system calls
    assert 0 < system_cpu_seconds(own, tree=False) <= cpu_seconds(own, tree=False)


def test_sleeping_is_counted_as_wake_ups():
    before = wakeups(os.getpid())
    for _ in range(20):
        time.sleep(0.001)
    assert wakeups(os.getpid()) - before >= 20


def test_the_machine_busy_time_includes_our_own_work():
    before, own = machine_busy_seconds(), time.process_time()
    while time.process_time() - own < 0.2:
        pass
    assert machine_busy_seconds() - before >= 0.15

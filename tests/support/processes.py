"""What the processes of a load test or a benchmark use, read from /proc (Linux): CPU time, memory, wake-ups,
and the whole machine's busy time, so a report can say where the cores went."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_tree(*pids: int) -> list[int]:
    """`pids` and every process they started, as they stand now (a server process's bookkeeping helper)."""
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += child_pids(pid)
    return found


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started that still run (started by any of its threads)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the thread or the process ended meanwhile
            found += [int(child) for child in children.read_text().split()]
    return found


def group_pids(group: int) -> list[int]:
    """The processes of the process group `group` (the supervisor's: its workers and their helpers, nginx, the task
    consumer), as they stand now."""
    return [pid for pid in _all_pids() if (stat := _stat_fields(pid)) and int(stat[2]) == group]


def named_pids(*names: str) -> list[int]:
    """The processes whose command name is one of `names` (`redis-server`, `postgres`), as they stand now."""
    pids = []
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() in names:
                pids.append(pid)
    return pids


def rss_mb(*pids: int) -> float:
    """The resident memory of the processes `pids` and those they started, together."""
    total = 0.0
    for pid in process_tree(*pids):
        for line in _proc(pid, "status", pids).splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def cpu_seconds(*pids: int, tree: bool = True) -> float:
    """The CPU time the processes `pids` used so far, together; with `tree`, also the processes they started
    and still run (a worker's bookkeeping helper), else not (a client whose children are the servers)."""
    return sum(user + system for user, system in _times(pids, tree))


def cpu_by_process(*pids: int) -> dict[int, float]:
    """The CPU time each of `pids` used so far (one that ended meanwhile is left out), for a set of processes that
    comes and goes (a database's connections); two readings are compared with `cpu_used_between`."""
    readings = {}
    for pid in pids:
        if stat := _stat_fields(pid):
            readings[pid] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return readings


def cpu_used_between(before: dict[int, float], after: dict[int, float]) -> float:
    """What the processes of the `after` reading used since the `before` one; one that started since counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def system_cpu_seconds(*pids: int, tree: bool = True) -> float:
    """The part of `cpu_seconds` spent in the kernel: system calls, and waking up and going to sleep."""
    return sum(system for _, system in _times(pids, tree))


def wakeups(*pids: int) -> int:
    """How many times the main threads of `pids` went to sleep waiting for something (voluntary context switches):
    an event loop's waits for its sockets."""
    total = 0
    for pid in pids:
        for line in _proc(pid, "status", pids).splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def machine_busy_seconds() -> float:
    """The CPU time every core of the machine spent on anything (all processes, the kernel, interrupts, and time
    taken by the hypervisor), so far."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _times(pids: tuple[int, ...], tree: bool) -> list[tuple[float, float]]:
    """(user, system) CPU seconds of each of `pids` (and what they started, with `tree`)."""
    tick = os.sysconf("SC_CLK_TCK")
    times = []
    for pid in process_tree(*pids) if tree else pids:
        if stat := _proc(pid, "stat", pids):
            fields = stat.rsplit(")", 1)[1].split()
            times.append((int(fields[11]) / tick, int(fields[12]) / tick))
    return times


def _all_pids() -> list[int]:
    return [int(path.name) for path in Path("/proc").iterdir() if path.name.isdigit()]


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state first); empty for a process that ended meanwhile."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _proc(pid: int, name: str, asked: tuple[int, ...]) -> str:
    """/proc/PID/NAME; empty for a started process that ended meanwhile (one asked for must be there)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except OSError:
        if pid in asked:
            raise
        return ""

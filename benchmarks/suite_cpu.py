"""Where the test suite's time goes: each test's wall time and the whole machine's CPU time
while it ran (from /proc/stat, so the Ray daemons, sweep subprocesses and trial workers a test
starts are counted, which pytest's --durations and `time` miss). A pytest plugin:

    python -m pytest -q -p benchmarks.suite_cpu            # writes suite_cpu.txt, most CPU first

Linux only. Run it on an idle machine: everything running beside it is counted too.
"""

from __future__ import annotations

import os
import time

import pytest

TICKS = os.sysconf("SC_CLK_TCK")
OUT = os.environ.get("SUITE_CPU_OUT", "suite_cpu.txt")
_rows: list[tuple[float, float, str]] = []


def busy_seconds() -> float:
    """CPU-seconds the whole machine has been busy since boot (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / TICKS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = busy_seconds(), time.perf_counter()
    yield  # setup (fixtures included: a shared sweep is counted in the first test that needs it), call, teardown
    _rows.append((busy_seconds() - cpu, time.perf_counter() - wall, item.nodeid))


def pytest_sessionfinish(session):
    if not _rows:
        return
    _rows.sort(reverse=True)
    with open(OUT, "w") as f:
        f.write(f"# {len(_rows)} tests: {sum(r[0] for r in _rows):.0f} CPU-s, {sum(r[1] for r in _rows):.0f} s wall\n")
        f.write("#   CPU-s  wall-s  test\n")
        for cpu, wall, nodeid in _rows:
            f.write(f"{cpu:9.1f} {wall:7.1f}  {nodeid}\n")

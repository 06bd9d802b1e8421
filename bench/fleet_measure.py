"""Measuring helpers of ``python -m bench fleet``: the manager process's memory and CPU per
phase, and timed REST calls."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

MB = 1e6


class ProcessMonitor:
    """Samples the RSS of process ``pid`` every ``interval_s`` in a thread (peak per phase
    and overall) and reads its CPU time; use as a context manager."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self._proc = psutil.Process(pid)
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="fleet-monitor", daemon=True)
        self.phase_peak = self.overall_peak = self.rss()

    def rss(self) -> int:
        """Current resident set size in bytes (0 once the process is gone)."""
        try:
            return int(self._proc.memory_info().rss)
        except psutil.Error:
            return 0

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far."""
        times = self._proc.cpu_times()
        return float(times.user + times.system)

    def thread_cpu_s(self) -> dict[str, float]:
        """CPU seconds so far per thread name (``/proc/PID/task/*/comm``; threads of one name
        summed; the main thread, the manager's event loop, as ``main``)."""
        ticks = os.sysconf("SC_CLK_TCK")
        result: dict[str, float] = {}
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                stat = (task / "stat").read_text()
            except OSError:
                continue  # the thread ended meanwhile
            fields = stat.rsplit(")", 1)[1].split()  # utime and stime: fields 14 and 15
            name = "main" if task.name == str(self.pid) else name
            cpu = (int(fields[11]) + int(fields[12])) / ticks
            result[name] = result.get(name, 0.0) + cpu
        return result

    def hwm_bytes(self) -> int:
        """The kernel's peak RSS of the process (``VmHWM``), 0 where unavailable."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            value = self.rss()
            with self._lock:
                self.phase_peak = max(self.phase_peak, value)
                self.overall_peak = max(self.overall_peak, value)

    def reset_phase(self) -> None:
        """Start a new phase: its peak starts at the current RSS."""
        with self._lock:
            self.phase_peak = self.rss()

    def __enter__(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


class Phase:
    """Wall time, manager CPU and peak RSS, and this process's CPU, over one phase."""

    def __init__(self, monitor: ProcessMonitor, name: str = "") -> None:
        self._monitor = monitor
        if name:  # a line to start a profiler by (``py-spy record -p PID``)
            print(f"fleet: phase {name} starts (manager pid {monitor.pid})", flush=True)
        self._me = psutil.Process()
        monitor.reset_phase()
        self._t0 = time.monotonic()
        self._cpu0 = monitor.cpu_s()
        self._own0 = self._own_cpu()
        self._load0 = os.getloadavg()[0]

    def _own_cpu(self) -> float:
        times = self._me.cpu_times()
        return float(times.user + times.system)

    def elapsed_s(self) -> float:
        """Seconds since the phase started."""
        return time.monotonic() - self._t0

    def figures(self) -> dict[str, Any]:
        """The phase's figures so far (rounded for the report)."""
        return {
            "manager_cpu_s": round(self._monitor.cpu_s() - self._cpu0, 2),
            "manager_peak_rss_mb": round(self._monitor.phase_peak / MB, 1),
            "bench_cpu_s": round(self._own_cpu() - self._own0, 2),
            # the machine is shared: its 1-minute load average at the start and now
            "load_average": [round(self._load0, 2), round(os.getloadavg()[0], 2)],
        }


async def timed_get(
    http: httpx.AsyncClient, path: str, *, repeat: int, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``GET path`` ``repeat`` times in a row: the first time (e.g. a cache miss), median,
    min and max milliseconds and the body size. Raises ``httpx.HTTPStatusError`` for an
    error status."""
    times = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = await http.get(path, params=params)
        resp.raise_for_status()
        if resp.headers.get("content-type", "").startswith("application/json"):
            resp.json()  # decoding is part of what a client pays
        times.append((time.perf_counter() - t0) * 1000)
        size = len(resp.content)
    return {
        "first_ms": round(times[0], 1),
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "bytes": size,
    }

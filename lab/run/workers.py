"""Warm workers: the local runner's job processes, started once and reused.

A fresh interpreter per job pays Python, torch and the lab's imports before its first step (~7 s here, more than a
toy fine-tune). The local runner instead keeps up to `max_parallel` worker processes, each with the launcher's
thread budget, and hands them one job (a `lab.run.pack.PackCall`) after another through a pipe. A worker that dies
(out of memory, a signal) or runs past `launcher.timeout_min` is replaced by a fresh one; its job is reported
failed with the reason, and the tasks of it that finished stay finished.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _serve(connection: Connection, threads: int) -> None:
    """A worker's life: set the thread budget before torch is first imported, then run each job it is sent and
    send back ("ok", outcomes) or ("error", one line) until it is sent None."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the runner, which stops the workers itself
    import torch

    torch.set_num_threads(threads)
    while True:
        message = connection.recv()
        if message is None:
            return
        call, job_id = message
        try:
            connection.send(("ok", call(job_id)))
        except BaseException as error:  # a job that raises (rather than recording a task's failure) fails whole
            from lab.run.launch import first_error_line

            connection.send(("error", first_error_line(error)))


@dataclass
class WarmJob:
    """One job given to a warm worker; `outcome` is set when it ends: ("ok", result) or ("error", reason)."""

    job_id: str
    log: str
    started: float = field(default_factory=time.monotonic)
    outcome: tuple[str, Any] | None = None

    def done(self) -> bool:
        return self.outcome is not None


@dataclass
class _Worker:
    process: Any
    connection: Connection
    job: WarmJob | None = None


class WarmWorkers:
    """Up to `size` worker processes (spawned, so nothing of the runner's state leaks into a job), reused job
    after job. `submit` needs a free worker (`free()`); `poll` collects ended jobs; `close` stops them all."""

    def __init__(self, size: int, threads: int, timeout_s: float, log: str = "") -> None:
        self.size, self.threads, self.timeout_s, self.log = size, threads, timeout_s, log
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.jobs = 0

    def free(self) -> bool:
        return sum(worker.job is not None for worker in self.workers) < self.size

    def _start(self) -> _Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_serve, args=(theirs, self.threads), daemon=True,
                                       name="lab-warm-worker")
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        self.workers.append(worker)
        return worker

    def submit(self, call: Any) -> WarmJob:
        worker = next((w for w in self.workers if w.job is None), None) or self._start()
        self.jobs += 1
        job = WarmJob(job_id=f"local-{worker.process.pid}-{self.jobs}", log=self.log)
        worker.connection.send((call, job.job_id))
        worker.job = job
        return job

    def _retire(self, worker: _Worker, reason: str) -> None:
        """End a worker whose job cannot finish (died, timed out, cancelled): the job fails with `reason`."""
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        if worker.job is not None:
            worker.job.outcome = ("error", reason)
        worker.connection.close()
        self.workers.remove(worker)

    def poll(self) -> None:
        """Collect every ended job: its sent outcome, or the reason its worker is gone."""
        for worker in list(self.workers):
            job = worker.job
            if job is None:
                continue
            try:
                if worker.connection.poll():
                    job.outcome = worker.connection.recv()
                    worker.job = None
                    continue
            except (EOFError, OSError):
                pass
            if not worker.process.is_alive():
                code = worker.process.exitcode
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
                self._retire(worker, f"the job ended without a result (its worker process {how})")
            elif time.monotonic() - job.started > self.timeout_s:
                self._retire(worker, f"the job ran past launcher.timeout_min ({self.timeout_s / 60:g} min) "
                                     f"and was stopped")

    def wait(self, seconds: float) -> None:
        """Sleep until a busy worker has something to say or is gone, at most `seconds` (no polling delay per job:
        toy jobs take less than a second)."""
        busy = [w for w in self.workers if w.job is not None]
        if busy:
            wait([obj for w in busy for obj in (w.connection, w.process.sentinel)], timeout=seconds)
        else:
            time.sleep(seconds)

    def cancel(self, job: WarmJob) -> None:
        for worker in list(self.workers):
            if worker.job is job:
                self._retire(worker, "cancelled")

    def close(self) -> None:
        for worker in list(self.workers):
            if worker.job is None:
                try:
                    worker.connection.send(None)
                except OSError:
                    pass
                worker.process.join(10)
            self._retire(worker, "cancelled")

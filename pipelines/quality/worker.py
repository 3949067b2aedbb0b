"""Validation in a child process that loads Great Expectations while the caller does other work.

Importing GE and building the suites costs 5-15 s of one core. The ingest job asks for the process's
``shared_worker()`` before its Beam pipeline: the child pays for GE on another core while the pipeline runs,
the job's quality step is then only the validation itself, and later runs in the same process (tests, a
long-lived task) find GE loaded, as they did when it was loaded in-process. Where no child process can be
started (a daemonic process, say) or the child dies, validation runs in the caller's process instead. As
with any spawned process, the caller's main script must be safe to import (``if __name__ == "__main__":``).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache
from pathlib import Path
from types import TracebackType

from pipelines.contracts import feed_names
from pipelines.quality.outcomes import FeedQuality
from pipelines.quality.validate import preload, validate_feed

log = logging.getLogger(__name__)


def _exit_with(parent: int) -> None:
    """End this child when the job that started it is gone (killed, say): it would wait for work forever."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _load(parent: int) -> None:
    """Import GE and build the suites ahead of time. A failure here is left for ``validate_feed`` to raise
    again, in full, to the caller."""
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    try:
        preload(feed_names())
    except Exception:
        log.debug("preloading suites failed", exc_info=True)
    gc.freeze()  # GE's long-lived objects (millions): keep full collections from walking them again


def _ready() -> None:
    pass


def validate_files(feed: str, files: list[Path], previous_rows: int | None) -> FeedQuality:
    """``validate_feed`` over a feed's staged Parquet files, read where the validation runs."""
    import pyarrow.parquet as pq

    return validate_feed(feed, pq.ParquetDataset(files).read(), previous_rows)


class QualityWorker:
    """One child process for validations; ``validate`` waits for it (and for GE to load)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        try:
            # A fresh interpreter: forking a process that runs Beam's and Kafka's threads is not safe.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                1, mp_context=context, initializer=_load, initargs=(os.getpid(),)
            )
            self._pool.submit(_ready)  # starts the child, and with it the GE import, now
        except Exception as error:  # whatever keeps us from having a child, validate here
            log.warning("no validation process (%s); validating in this process", error)
            self.close()

    def validate(self, feed: str, files: list[Path], previous_rows: int | None) -> FeedQuality:
        if self._pool is not None:
            try:
                return self._pool.submit(validate_files, feed, files, previous_rows).result()
            except BrokenProcessPool:  # the child died (out of memory, say): the result is the same here
                log.warning("the validation process died; validating in this process")
                self.close(wait=False)
        return validate_files(feed, files, previous_rows)

    def close(self, wait: bool = True) -> None:
        """Stop the child; with ``wait=False`` it finishes loading GE on its own and then ends."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> QualityWorker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(wait=exc is None)  # a failed run need not wait for GE to finish loading


@cache
def shared_worker() -> QualityWorker:
    """This process's worker, started on first use and kept until the process ends or it is stopped."""
    return QualityWorker()


def stop_shared_worker() -> None:
    """End this process's worker, if it has one: a pass that goes on to resolve frees GE's memory first."""
    if shared_worker.cache_info().currsize:
        shared_worker().close(wait=False)
        shared_worker.cache_clear()


# A forked process inherits the worker object but not the threads that talk to its child: it starts its own.
os.register_at_fork(after_in_child=shared_worker.cache_clear)

"""The threads that keep an accelerator sampling: PNG writers, and sampling one batch ahead.

Only used when a GPU samples (``outputs.overlaps_sampling``); on the CPU, :class:`Inline` does the
same work at once on the caller's thread.
"""

from __future__ import annotations

import collections
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

WRITERS = 4  # PNG writer threads: encoding a 1024 px image takes ~60 ms, a batch of 32 ~2 s of CPU

_PNG_POOL = None


class Inline:
    """A "pool" that does submitted work at once, on the caller's thread: when the CPU samples, threads
    only compete with it. An error is raised by ``submit`` itself."""

    def submit(self, fn, *args, **kwargs):
        done: Future = Future()
        done.set_result(fn(*args, **kwargs))
        return done


def png_writers():
    """The PNG writer threads, one pool per process: starting four threads per run cost more than a
    short run's bookkeeping. Pending writes are waited for by each run (and at interpreter exit)."""
    global _PNG_POOL
    if _PNG_POOL is None or _PNG_POOL[0] != os.getpid():  # a forked child has none of the threads
        _PNG_POOL = (os.getpid(), ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="evalrun-png"))
    return _PNG_POOL[1]


class Ahead:
    """Runs batches' sampling in submission order: on one thread, one batch ahead of the caller
    (``threaded``: a GPU samples the next batch while the CPU hashes, writes and scores this one),
    or at once on the caller's thread."""

    def __init__(self, threaded: bool) -> None:
        self.depth = 1 if threaded else 0  # batches left sampling while the caller works
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalrun-sample") if threaded else Inline()
        self._futures: collections.deque = collections.deque()
        self._failed = False

    def submit(self, fn, *args) -> None:
        self._futures.append(self._pool.submit(self._unless_failed, fn, *args))

    def _unless_failed(self, fn, *args):
        """Nothing samples after a batch failed: a batch queued behind it (submitted before the caller
        took the error) is skipped by the thread itself, which runs them in order; the caller's
        ``take`` raises the first error before it reaches the skipped ones."""
        if self._failed:
            raise RuntimeError("not sampled: an earlier batch failed")
        try:
            return fn(*args)
        except BaseException:
            self._failed = True
            raise

    def take(self, keep: int) -> Iterator[Any]:
        while len(self._futures) > keep:
            yield self._futures.popleft().result()

    def close(self) -> None:
        """Nothing samples after the run ends: queued batches are dropped, a running one finishes."""
        for future in self._futures:
            future.cancel()
        self._futures.clear()
        if not isinstance(self._pool, Inline):
            self._pool.shutdown(wait=True)


class FairRLock:
    """A reentrant lock taken in the order it was asked for. Python's locks are not: the sampling
    thread, releasing the lock after a batch and taking it again for the next, could keep feature
    extraction (which waits for it) waiting a whole batch more, and the GPU idle after that."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: collections.deque = collections.deque()

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            self._queue.append(me)
            try:
                while self._owner is not None or self._queue[0] != me:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue, or no one behind gets the lock
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairRLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> "FairRLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

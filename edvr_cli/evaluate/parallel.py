"""`ordered_map`: a function over an iterable on a few threads, results in the input's order.

`edvr eval` scores frames this way (the metrics and the decoding release the GIL). It is not a
ThreadPoolExecutor because of Ctrl-C: the signal's exception can land inside any Python-level
lock operation of the main thread (a Future's condition, the executor's shutdown lock) and
leave that lock held; a worker would then wait on it for ever, and so would the interpreter's
exit, which joins an executor's threads. Here the queues are `queue.SimpleQueue` (C code, no
Python-level lock) and the threads are daemons that are never joined.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], workers: int) -> Iterator[Result]:
    """Yield `function(item)` for each item, in order, computed on `workers` threads with at
    most 2 * workers items in flight. An exception from `function` is raised here, at its item's
    turn. Closing the generator early drops the items not yet started."""
    tasks: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        while (task := tasks.get()) is not None:
            number, item = task
            try:
                done.put((number, function(item), None))
            except Exception as error:  # raised by the consumer, in order
                done.put((number, None, error))

    threads = [threading.Thread(target=work, daemon=True, name=f"ordered-map-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    ready: dict[int, tuple] = {}

    def take(number: int):
        while number not in ready:
            finished, *outcome = done.get()
            ready[finished] = outcome
        result, error = ready.pop(number)
        if error is not None:
            raise error
        return result

    taken = submitted = 0
    try:
        for item in items:
            tasks.put((submitted, item))
            submitted += 1
            if submitted - taken >= 2 * workers:
                yield take(taken)
                taken += 1
        while taken < submitted:
            yield take(taken)
            taken += 1
    finally:
        while True:  # items not started yet are dropped (after an error, a Ctrl-C or an early close)
            try:
                tasks.get_nowait()
            except queue.Empty:
                break
        for _ in threads:
            tasks.put(None)

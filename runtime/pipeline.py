"""The host steps overlapped: reading, pre-processing, inference and post-processing each on its own thread, with a
bounded queue between each two, results in input order (``Predictor.stream``, ``m2f infer``, ``m2f bench``).

    source (caller's iterable) -> [read + pre] -> queue -> [infer] -> queue -> [post] -> queue -> caller

Every stage handles one image at a time in arrival order, so order is kept without sorting. Decoding, resizing,
ONNX Runtime, CUDA copies and most numpy work release the GIL, so the stages really run at once on different cores;
throughput approaches 1 / (the slowest stage's time). On a machine where this process may use two or more CPUs the
inference thread keeps to all of them but one and the host stages (reading, pre- and post-processing) to that one:
left alone, Linux tends to wake a stage on the CPU of the stage that fed it, and two busy stages then share a core
(measured on 2 cores: 20 images/s when they shared one, 24 when apart, 24.5 the bound). An image that fails in a
stage carries its error to the caller in its place (one bad file never costs the rest). The queues hold at most
``depth`` images each, so memory is bounded, and a live source (a camera with the "latest" drop policy) is only read
when the first stage can take a frame: frames it could not take are dropped at the source, as without the pipeline.
Closing the stream (breaking out of the loop, an exception, Ctrl-C handled by the caller) stops reading, lets the
threads finish what they hold and joins them.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from m2f.threads import allowed_cpus

from .image_io import read_image, to_rgb8
from .results import Result

DEFAULT_DEPTH = 2  # images waiting between two stages
# While a stream runs: a stage that needs the GIL back (ONNX Runtime returning, a numpy call starting) waits up to
# the interpreter's switch interval for the thread holding it; 5 ms by default, a large share of a 50 ms stage.
SWITCH_INTERVAL_S = 0.0005
_END = object()  # after the last item


@dataclass
class Item:
    """One image on its way through: ``tag`` is the caller's (a name, an id), ``image`` what the source gave (a path,
    an array, or a callable returning an array); ``result`` or ``error`` when it comes out."""

    tag: Any
    image: Any
    result: Result | None = None
    error: BaseException | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _prepared: Any = None
    _outputs: Any = None

    @property
    def array(self) -> np.ndarray | None:
        """The decoded RGB image (None when reading it failed)."""
        return self.image if isinstance(self.image, np.ndarray) else None


def decode_input(image) -> np.ndarray:
    """An RGB uint8 array from what a source gives: a path, an array, or a callable returning either."""
    if callable(image):
        image = image()
    return read_image(image) if not isinstance(image, np.ndarray) else to_rgb8(image)


def stage_cpus() -> tuple[set[int], set[int]] | None:
    """(CPUs for the inference thread, CPUs for the host stages), or None where this process may use a single CPU
    or the platform cannot say."""
    allowed = allowed_cpus()
    return (set(allowed[:-1]), {allowed[-1]}) if allowed and len(allowed) >= 2 else None


def _keep_to(cpus: set[int] | None) -> None:
    """Keep the calling thread to ``cpus`` (Linux sets a thread's own affinity); where it cannot, it runs anywhere."""
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass


def _item(entry) -> Item:
    """A source's entry: an Item, a (tag, image) pair, or an image (its own tag)."""
    if isinstance(entry, Item):
        return entry
    if isinstance(entry, tuple) and len(entry) == 2:
        return Item(*entry)
    return Item(entry, entry)


class Pipeline:
    """Stages of a Predictor on threads (a RemotePredictor's requests in the caller's thread). ``stream(source)``
    yields the source's Items in order, each with a result or an error; use it once per Pipeline."""

    def __init__(self, predictor, depth: int = DEFAULT_DEPTH):
        if depth < 1:
            from m2f.errors import ArgumentError

            raise ArgumentError(f"the pipeline depth must be 1 or more, not {depth}")
        self.predictor, self.depth = predictor, depth
        # a served model (RemotePredictor) is pre- and post-processed by the server, and its client may only be used
        # from the thread that made it: its stream runs in the caller's thread, one request at a time
        self._local = hasattr(predictor, "preprocess")
        self._stop = threading.Event()  # closing: every stage drops what it holds
        self._no_more = threading.Event()  # stop reading: what is in flight still comes out
        self._threads: list[threading.Thread] = []

    # --- stages: each takes an Item and fills its next field; an Item with an error passes through untouched ---

    def _prepare(self, item: Item) -> None:
        start = time.perf_counter()
        item.image = decode_input(item.image)
        mid = time.perf_counter()
        item._prepared = self.predictor.preprocess([item.image])
        item.timings["read"], item.timings["pre"] = mid - start, time.perf_counter() - mid

    def _infer(self, item: Item) -> None:
        start = time.perf_counter()
        item._outputs = self.predictor.backend.infer(item._prepared.feeds)
        item.timings["infer"] = time.perf_counter() - start

    def _post(self, item: Item) -> None:
        start = time.perf_counter()
        item.result = self.predictor.postprocess(item._outputs, item._prepared)[0]
        item._prepared = item._outputs = None  # the network's outputs are large: free them now
        item.timings["post"] = time.perf_counter() - start
        item.result.timings = {k: item.timings[k] for k in ("pre", "infer", "post")}

    def _put(self, q: queue.Queue, value) -> bool:
        """Put unless the stream is being closed; False when it is."""
        while not self._stop.is_set():
            try:
                q.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    def _source(self, source: Iterable, out: queue.Queue) -> None:
        entries = iter(source)
        try:
            for entry in entries:
                if self._no_more.is_set() or not self._put(out, _item(entry)):
                    return
        except Exception as e:  # the source itself failed (a video that stopped decoding...): say so in order
            self._put(out, Item(None, None, error=e))
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()  # a generator's own clean-up (a camera released) runs now, on this thread
            self._put(out, _END)

    def _stage(self, work: Callable[[Item], None], inbox: queue.Queue, out: queue.Queue, bind=None,
               cpus: set[int] | None = None) -> None:
        _keep_to(cpus)
        if bind is not None:
            bind()
        while True:
            item = self._get(inbox)
            if item is _END:
                self._put(out, _END)
                return
            if item.error is None:
                try:
                    work(item)
                except Exception as e:  # this image only
                    item.error = e
            if not self._put(out, item):
                return

    def stream(self, source: Iterable) -> Iterator[Item]:
        """Items of ``source`` (images: paths, arrays or callables returning arrays; or (tag, image) pairs; or
        Items) with their results, in order."""
        if not self._local:
            yield from self._sequential(source)
            return
        queues = [queue.Queue(maxsize=self.depth) for _ in range(4)]
        bind = getattr(self.predictor.backend, "bind_thread", None)
        inference, host = stage_cpus() or (None, None)
        targets = [(self._source, (source, queues[0])),
                   (self._stage, (self._prepare, queues[0], queues[1], None, host)),
                   (self._stage, (self._infer, queues[1], queues[2], bind, inference)),
                   (self._stage, (self._post, queues[2], queues[3], None, host))]
        self._threads = [threading.Thread(target=t, args=a, daemon=True, name=f"m2f-{i}")
                         for i, (t, a) in enumerate(targets)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
        for thread in self._threads:
            thread.start()
        try:
            while True:
                item = self._get(queues[3])
                if item is _END:
                    return
                yield item
        finally:
            self.close()
            sys.setswitchinterval(interval)

    def _sequential(self, source: Iterable) -> Iterator[Item]:
        for entry in source:
            item = _item(entry)
            if item.error is None:
                try:
                    item.image = decode_input(item.image)
                    item.result = self.predictor.predict(item.image)
                except Exception as e:  # this image only
                    item.error = e
            yield item
            if self._no_more.is_set():
                return

    def stop_reading(self) -> None:
        """Take no more images from the source; those already read still come out of ``stream``."""
        self._no_more.set()

    def close(self) -> None:
        """Stop reading, let every stage drop what it holds, join the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

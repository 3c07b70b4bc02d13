"""The pipelined runtime (m2f.runtime.pipeline, Predictor.stream): the same results as the sequential Predictor in
the same order, one bad image costing only itself, bounded queues, stages that really overlap, and shutdown that
closes the source. The mechanics tests use a stand-in predictor whose stages record when they run (sleeping, which
releases the GIL as ONNX Runtime and numpy do); the results test runs a real exported model."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from m2f.runtime.pipeline import Item, Pipeline
from m2f.runtime.results import Result


def test_stream_equals_the_sequential_predictor_in_order(exported, tmp_path):
    from m2f.runtime import Predictor
    from m2f.runtime.formats import write_png

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (60 + 7 * i, 90 - 5 * i, 3), dtype=np.uint8) for i in range(6)]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        write_png(image, paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source = paths[:3] + [tmp_path / "broken.png"] + paths[3:]
    with Predictor(exported[1], threads=1) as predictor:
        expected = [predictor.predict(p) for p in paths]
        items = list(predictor.stream(source))
    assert [item.tag for item in items] == source
    assert items[3].error is not None and items[3].result is None
    got = [item.result for item in items if item.error is None]
    assert len(got) == 6
    for mine, ref in zip(got, expected):
        assert np.array_equal(mine.panoptic, ref.panoptic) and np.array_equal(mine.semantic, ref.semantic)
        assert [(s.category_id, s.area) for s in mine.segments] == [(s.category_id, s.area) for s in ref.segments]
        assert set(mine.timings) == {"pre", "infer", "post"}


class _Prepared:
    def __init__(self, feeds):
        self.feeds = feeds


class _Backend:
    def __init__(self, log, delay, fail_on):
        self.log, self.delay, self.fail_on = log, delay, fail_on

    def infer(self, feeds):
        self.log.append(("infer", feeds["i"], time.perf_counter()))
        time.sleep(self.delay)
        self.log.append(("infer-end", feeds["i"], time.perf_counter()))
        if feeds["i"] == self.fail_on:
            raise RuntimeError(f"inference failed on image {self.fail_on}")
        return {"i": feeds["i"]}


class _StandIn:
    """A predictor whose three stages sleep ``delay`` s and log (stage, image, time)."""

    def __init__(self, delay=0.02, fail_on=None):
        self.log: list = []
        self.delay = delay
        self.backend = _Backend(self.log, delay, fail_on)

    def preprocess(self, images):
        i = int(images[0][0, 0, 0])
        self.log.append(("pre", i, time.perf_counter()))
        time.sleep(self.delay)
        return _Prepared({"i": i})

    def postprocess(self, outputs, prepared):
        self.log.append(("post", outputs["i"], time.perf_counter()))
        time.sleep(self.delay)
        self.log.append(("post-end", outputs["i"], time.perf_counter()))
        return [Result(height=1, width=1)]


def _images(n, pulled=None):
    for i in range(n):
        if pulled is not None:
            pulled.append(i)
        yield i, np.full((2, 2, 3), i, np.uint8)


def test_an_error_in_a_stage_costs_only_that_image():
    items = list(Pipeline(_StandIn(0.001, fail_on=4)).stream(_images(8)))
    assert [item.tag for item in items] == list(range(8))
    assert [i.tag for i in items if i.error is not None] == [4]
    assert "inference failed on image 4" in str(items[4].error)


def test_stages_overlap():
    """While one image is post-processed, the next is already in inference."""
    stand_in = _StandIn(0.03)
    list(Pipeline(stand_in).stream(_images(6)))
    when = {(stage, i): t for stage, i, t in stand_in.log}
    overlapped = [i for i in range(5) if when[("infer", i + 1)] < when[("post-end", i)]]
    assert len(overlapped) >= 3, stand_in.log


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="keeping stages apart needs Linux thread affinity and at least 2 CPUs for this process")
def test_inference_and_host_stages_keep_to_different_cpus():
    """Linux otherwise tends to run a stage on the CPU of the stage that woke it, and two busy stages share a core."""
    allowed = os.sched_getaffinity(0)
    stand_in, seen = _StandIn(0.001), {}
    infer, post = stand_in.backend.infer, stand_in.postprocess
    stand_in.backend.infer = lambda feeds: seen.setdefault("infer", os.sched_getaffinity(0)) and infer(feeds)
    stand_in.postprocess = lambda o, p: seen.setdefault("post", os.sched_getaffinity(0)) and post(o, p)
    assert len(list(Pipeline(stand_in).stream(_images(4)))) == 4
    assert seen["infer"] and seen["post"] and not seen["infer"] & seen["post"]
    assert seen["infer"] | seen["post"] == allowed
    assert os.sched_getaffinity(0) == allowed  # the caller's own thread is left as it was


@pytest.mark.parametrize("depth", [1, 3])
def test_queues_are_bounded(depth):
    """The source is read at most (3 queues x depth) + the images the stages hold + 1 ahead of the consumer."""
    pulled, ahead = [], []
    pipeline = Pipeline(_StandIn(0.005), depth=depth)
    for n, item in enumerate(pipeline.stream(_images(40, pulled)), start=1):
        time.sleep(0.01)  # a slow consumer: the stages fill up
        ahead.append(len(pulled) - n)
    assert max(ahead) <= 4 * depth + 4
    assert max(ahead) >= depth  # it did read ahead


def test_stop_reading_drains_what_is_in_flight_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i, np.full((2, 2, 3), i % 256, np.uint8)
                i += 1
        finally:
            closed.set()

    pipeline = Pipeline(_StandIn(0.002), depth=2)
    tags = []
    for item in pipeline.stream(endless()):
        tags.append(item.tag)
        if len(tags) == 5:
            pipeline.stop_reading()
    assert tags == list(range(len(tags))) and 5 <= len(tags) <= 5 + 4 * 2 + 4
    assert closed.wait(5)
    assert not any(t.is_alive() for t in pipeline._threads)


def test_breaking_out_joins_the_threads():
    pipeline = Pipeline(_StandIn(0.002))
    for item in pipeline.stream(_images(100)):
        break
    assert isinstance(item, Item)
    assert not any(t.is_alive() for t in pipeline._threads)


def test_depth_must_be_positive():
    from m2f.errors import ArgumentError

    with pytest.raises(ArgumentError, match="depth must be 1 or more"):
        Pipeline(_StandIn(), depth=0)

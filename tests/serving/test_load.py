"""A bounded load test on loopback: 8 clients x 50 requests against m2f serve; every answer correct, no errors, and
Triton's dynamic batcher formed batches (more requests than executions)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_eight_clients_fifty_requests_each(served, sample_images, local_results):
    from m2f.runtime.image_io import read_image
    from m2f.serving.loadtest import run_load

    images = [read_image(p) for p in sample_images]
    report = run_load(served.grpc, images, clients=8, requests_per_client=50,
                      check=lambda i, r: np.array_equal(r.panoptic, local_results[i].panoptic)
                      and r.segments == local_results[i].segments)
    print(report.line())
    assert not report.failures and report.wrong == 0
    assert len(report.latencies_s) == 400 and report.inferences == 400
    assert report.executions < report.inferences  # batches of more than one request were formed

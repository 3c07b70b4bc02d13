"""m2f serve on a real Triton server (PyTriton), loopback only: answers equal the in-process Predictor over HTTP and
gRPC, m2f infer takes the URL, bad requests get one sentence and the server keeps serving, health and metrics
answer, and stopping answers the requests in flight."""
from __future__ import annotations

import io
import json
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from m2f import contract
from m2f.runtime.host import HostOptions

from .conftest import Served


def assert_same(served, local):
    """Two Results are the same: maps, segments, instances (masks, scores, classes), sizes."""
    assert (served.height, served.width, served.fit_scale) == (local.height, local.width, local.fit_scale)
    assert tuple(served.input_size) == tuple(local.input_size)
    np.testing.assert_array_equal(served.panoptic, local.panoptic)
    np.testing.assert_array_equal(served.semantic, local.semantic)
    assert served.segments == local.segments
    assert len(served.instances) == len(local.instances)
    for a, b in zip(served.instances, local.instances):
        assert (a.category_id, a.category, a.query, a.score) == (b.category_id, b.category, b.query, b.score)
        np.testing.assert_array_equal(a.mask, b.mask)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_results_equal_the_local_predictor(served, sample_images, local_results, protocol):
    from m2f.serving.client import RemotePredictor

    with RemotePredictor(getattr(served, protocol)) as remote:
        assert remote.names == local_names(served)
        results = remote.predict_batch(sample_images)
    assert len(results) == len(local_results)
    for got, want in zip(results, local_results):
        assert got.panoptic is not None and got.segments  # the bundled model finds segments in every sample
        assert_same(got, want)


def local_names(served):
    import tritonclient.http as http

    config = http.InferenceServerClient(f"127.0.0.1:{served.http_port}").get_model_config("m2f")
    return json.loads(config["parameters"][contract.METADATA_PARAMETER]["string_value"])["class_names"]


def test_metadata_travels_in_the_model_config(served, bundled_onnx):
    import onnx
    import tritonclient.grpc as grpc

    config = grpc.InferenceServerClient(f"127.0.0.1:{served.grpc_port}").get_model_config("m2f", as_json=True)
    published = json.loads(config["config"]["parameters"][contract.METADATA_PARAMETER]["string_value"])
    stored = next(p.value for p in onnx.load(str(bundled_onnx)).metadata_props if p.key == contract.KEY)
    assert published == json.loads(stored)
    assert config["config"]["dynamic_batching"]["preferred_batch_size"] == [2, 4, 8]


def test_infer_command_runs_a_served_model(served, sample_images, local_results, tmp_path):
    from m2f.cli import main
    from m2f.runtime.formats import panoptic_rgb

    assert main(["infer", served.http, str(sample_images[0]), "-o", str(tmp_path), "--no-overlay"]) == 0
    from PIL import Image

    written = np.asarray(Image.open(tmp_path / f"{sample_images[0].stem}.panoptic.png"))
    np.testing.assert_array_equal(written, panoptic_rgb(local_results[0].panoptic))
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["model"] == served.http and not summary["failed"]


def test_client_side_task_and_score_filters(served, sample_images, local_results):
    from m2f.serving.client import RemotePredictor

    with RemotePredictor(served.grpc, HostOptions(tasks=("instance",), score_threshold=0.3)) as remote:
        got = remote.predict(sample_images[1])
    assert got.panoptic is None and got.semantic is None and not got.segments
    assert [i.score for i in got.instances] == [i.score for i in local_results[1].instances if i.score >= 0.3]


def _raw_request(served, name, data, datatype, shape):
    """Send one request with tritonclient; (answer outputs or None, error message or None)."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(f"127.0.0.1:{served.http_port}")
    tensor = http.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(data)
    try:
        answer = client.infer("m2f", [tensor])
    except InferenceServerException as e:
        return None, e.message()
    return answer, None


def _png(height, width) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 120, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("payload, expected", [
    (b"this is not an image", "is not an image PIL can read"),
    (b"", "is empty (0 bytes)"),
    (_png(600, 600), "more than the 300000 this server accepts"),
    (_png(40, 40)[:60], "is a broken image"),
])
def test_bad_images_get_one_sentence_and_the_server_keeps_serving(served, sample_images, local_results, payload,
                                                                  expected):
    from m2f.serving.client import RemotePredictor

    answer, refused = _raw_request(served, contract.SERVED_IMAGE, np.array([[payload]], dtype=object), "BYTES",
                                   [1, 1])
    assert refused is None
    message = answer.as_numpy(contract.SERVED_ERROR).reshape(-1)[0].decode()
    assert expected in message and "Traceback" not in message and message.count("\n") == 0
    assert answer.as_numpy(contract.SERVED_RESULT).reshape(-1)[0] == b""
    with RemotePredictor(served.http) as remote:  # still serving
        assert_same(remote.predict(sample_images[0]), local_results[0])


@pytest.mark.parametrize("name, data, datatype, shape, expected", [
    (contract.SERVED_IMAGE, np.zeros((1, 1), np.float32), "FP32", [1, 1], "expects 'BYTES'"),
    (contract.SERVED_IMAGE, np.array([[b"a", b"b"]], dtype=object), "BYTES", [1, 2], "shape"),
    ("pixels", np.array([[b"a"]], dtype=object), "BYTES", [1, 1], "pixels"),
])
def test_malformed_requests_are_refused_by_triton(served, sample_images, local_results, name, data, datatype,
                                                  shape, expected):
    from m2f.serving.client import RemotePredictor

    answer, refused = _raw_request(served, name, data, datatype, shape)
    assert answer is None and expected in refused and "Traceback" not in refused
    with RemotePredictor(served.grpc) as remote:
        assert_same(remote.predict(sample_images[2]), local_results[2])


def test_a_refused_image_raises_one_sentence_in_the_client(served, sample_images, local_results):
    from m2f.serving.client import RemotePredictor
    from m2f.serving.protocol import ServingError

    with RemotePredictor(served.http) as remote:
        with pytest.raises(ServingError, match=r"is 700x700 = 490000 pixels, more than the 300000 this server "
                                               r"accepts; send a smaller image$"):
            remote.predict(np.zeros((700, 700, 3), np.uint8))
        assert_same(remote.predict(sample_images[0]), local_results[0])


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:9/m2f", "no Triton server answers at http://127.0.0.1:9"),
    ("http://127.0.0.1/m2f", "has no port"),
    ("http://127.0.0.1:8000", "is not a served model's URL"),
])
def test_client_errors_name_the_problem(url, expected):
    pytest.importorskip("tritonclient.http", reason="needs tritonclient (pip install 'm2f[serve]')")
    from m2f.errors import M2FError
    from m2f.serving.client import RemotePredictor

    with pytest.raises(M2FError, match=expected):
        RemotePredictor(url)


def test_unknown_model_and_client_thresholds_are_refused(served):
    from m2f.errors import M2FError
    from m2f.serving.client import RemotePredictor

    with pytest.raises(M2FError, match="has no ready model named 'nope'"):
        RemotePredictor(served.http.replace("/m2f", "/nope"))
    with pytest.raises(M2FError, match="cannot be chosen by the client; pass them to 'm2f serve'"):
        RemotePredictor(served.http, HostOptions(threshold=0.5))


def test_health_and_prometheus_metrics(served):
    base = f"http://127.0.0.1:{served.http_port}"
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/m2f/ready"):
        with urllib.request.urlopen(base + path, timeout=10) as response:
            assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'nv_inference_request_success{model="m2f",version="1"}' in text
    assert "nv_inference_queue_duration_us" in text


def test_stopping_answers_the_requests_in_flight(bundled_onnx, sample_images, local_results):
    """SIGTERM while requests wait in the batcher: every one is answered correctly, then the server exits 143 (a
    request arriving after the signal would be refused by Triton; these were all accepted before it)."""
    import time

    from m2f.serving.client import RemotePredictor

    # batches of up to 32 that wait up to 2 s to fill: the 18 requests below are queued, not yet run, at the signal
    server = Served(bundled_onnx, "--max-queue-delay", "2000000", "--max-batch", "32")
    clients = [RemotePredictor(server.grpc) for _ in range(3)]
    answers, errors = [], []

    def send(remote):
        try:
            answers.append(remote.predict_batch(sample_images * 2))
        except Exception as e:  # recorded, asserted below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    time.sleep(1.0)
    code = server.stop()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert code == 143 and "server stopped" in server.output
    log = re.search(r"^  log\s+(\S+)$", server.output, re.M).group(1)  # a temporary log: gone after a clean stop
    assert "m2f-serve-" in log and not os.path.exists(os.path.dirname(log))
    assert len(answers) == 3
    for results in answers:
        assert len(results) == len(local_results * 2)
        for got, want in zip(results, local_results * 2):
            assert_same(got, want)


def test_bench_runs_a_served_model(served, capsys):
    from m2f.cli import main

    assert main(["bench", served.grpc, "--iterations", "2", "--warmup", "0"]) == 0
    assert "(triton-grpc, fp32)" in capsys.readouterr().out


def test_validate_refuses_a_served_model(capsys):
    from m2f.cli import main

    assert main(["validate", "ckpt.pth", "http://127.0.0.1:8000/m2f", "--data", "synthetic"]) == 2
    assert "compares the network's raw tensors, which a served model" in capsys.readouterr().err


def test_a_port_in_use_is_one_sentence(served, bundled_onnx, capsys):
    from m2f.cli import main
    from m2f.serving.local_triton import free_ports

    grpc, metrics = free_ports(2)
    code = main(["serve", str(bundled_onnx), "--http-port", str(served.http_port), "--grpc-port", str(grpc),
                 "--metrics-port", str(metrics), "--threads", "1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (f"m2f serve: error: port {served.http_port} on 127.0.0.1 is in use "
                                               f"(another server?); choose another with --http-port")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _proc(pid: int, name: str) -> list[str]:
    return (Path("/proc") / str(pid) / name).read_bytes().decode(errors="replace").split("\0")


def test_a_served_model_keeps_its_token_off_the_command_line(served):
    """serving/access_token.py: what another local user can read in /proc is the placeholder."""
    from m2f.serving.access_token import FILE_VARIABLE, PLACEHOLDER

    servers = [p for p in _children(served.process.pid) if _proc(p, "cmdline")[0].endswith("/tritonserver")]
    assert len(servers) == 1, "m2f serve should have started one tritonserver"
    argv = _proc(servers[0], "cmdline")
    for option in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert argv[argv.index(option) + 1] == PLACEHOLDER
    assert not [a for a in argv if "triton-access-token=" in a]
    environment = _proc(servers[0], "environ")  # readable by this user only; holds a path, never the token
    setting_file = next(v for v in environment if v.startswith(FILE_VARIABLE + "=")).split("=", 1)[1]
    assert not Path(setting_file).exists()  # the shim deleted it as tritonserver started
    assert not [v for v in environment if "triton-access-token" in v]
    for stub in _children(servers[0]):  # the Python-backend stubs do not inherit the shim
        assert not [v for v in _proc(stub, "environ") if v.startswith((FILE_VARIABLE, "LD_PRELOAD="))]

    # the protected endpoints refuse a missing token and the placeholder; the model is loaded, which PyTriton did
    # through the protected repository endpoint with the real token: the server holds that one
    base = f"http://127.0.0.1:{served.http_port}/v2/repository"
    for headers in ({}, {"triton-access-token": PLACEHOLDER}):
        for path in ("/index", "/models/m2f/unload"):
            request = urllib.request.Request(base + path, data=b"{}", headers=headers, method="POST")
            with pytest.raises(urllib.error.HTTPError, match="403"):
                urllib.request.urlopen(request, timeout=10)
    with urllib.request.urlopen(f"http://127.0.0.1:{served.http_port}/v2/models/m2f/ready", timeout=10) as answer:
        assert answer.status == 200


def _exits(pid: int, within_s: float = 10.0) -> bool:
    """Whether process ``pid`` is gone or a zombie (dead, not yet reaped) within ``within_s``: SIGKILL is delivered
    asynchronously, so a killed process may still run for a moment on a loaded machine."""
    import time

    deadline = time.monotonic() + within_s
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_stop_that_hangs_is_abandoned_and_its_server_killed(bundled_onnx, monkeypatch):
    """serving/server.py Server.stop: PyTriton's stop joins its handler threads without a time limit; one that never
    returns must not keep a stopped server alive. Past the limit m2f gives up, kills its tritonserver and says so."""
    pytest.importorskip("pytriton", reason="m2f serve needs nvidia-pytriton (pip install 'm2f[serve]')")
    from m2f.errors import M2FError
    from m2f.runtime import Predictor
    from m2f.serving.local_triton import free_ports
    from m2f.serving.server import ServeOptions, Server

    http, grpc, metrics = free_ports(3)
    with Predictor(bundled_onnx, threads=1) as predictor:
        server = Server([predictor], ServeOptions(http_port=http, grpc_port=grpc, metrics_port=metrics)).start()
        triton = server._triton
        tritonservers = [p for p in _children(os.getpid()) if _proc(p, "cmdline")[0].endswith("/tritonserver")]
        assert len(tritonservers) == 1
        release = threading.Event()
        monkeypatch.setattr(triton, "stop", lambda: release.wait(60))  # a stop stuck before tritonserver was told
        try:
            with pytest.raises(M2FError) as stopped:
                server.stop(limit_s=2)
            assert str(stopped.value) == ("the Triton server did not stop within 2 s; its tritonserver process was "
                                          "killed")
            assert _exits(tritonservers[0])
        finally:
            release.set()
            monkeypatch.undo()
            triton.stop()  # PyTriton's own clean-up of what is left (its workspace, the handler threads)

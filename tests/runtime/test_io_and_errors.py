"""Images as users have them, output formats, and one-sentence errors; interrupting a video run keeps results."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from m2f.cli import main
from m2f.errors import M2FError
from m2f.errors import MetadataError
from m2f.runtime import Predictor
from m2f.runtime.formats import rle_decode, rle_encode
from m2f.runtime.image_io import ImageError, read_image


def test_exif_rotation(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255  # white band on the left of the stored (landscape) pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=100)
    shown = read_image(tmp_path / "r.jpg")
    assert shown.shape == (40, 20, 3)  # displayed as portrait
    assert shown[:8, :, 0].mean() > 200 and shown[-8:, :, 0].mean() < 50  # the band is now on top


def test_sixteen_bit_rgba_palette_gray(tmp_path):
    Image.fromarray((np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16)).save(tmp_path / "d16.png")
    a = read_image(tmp_path / "d16.png")
    assert a.dtype == np.uint8 and a.shape == (30, 40, 3) and a.max() > 200
    Image.fromarray(np.full((5, 6, 4), 200, np.uint8)).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (5, 6, 3)
    Image.fromarray(np.full((5, 6, 3), 10, np.uint8)).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (5, 6, 3)
    Image.fromarray(np.full((5, 6), 7, np.uint8)).save(tmp_path / "g.png")
    assert (read_image(tmp_path / "g.png") == 7).all()


def test_unreadable_image(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError, match=r"cannot read image .*bad\.jpg"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "none.png")


@pytest.mark.parametrize("shape", [(7, 9), (1, 1), (33, 17)])
def test_rle_matches_pycocotools(shape):
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(shape[0])
    for m in (rng.random(shape) > 0.5, np.ones(shape, bool), np.zeros(shape, bool)):
        ours = rle_encode(m)
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"] == ref["counts"].decode() and ours["size"] == list(ref["size"])
        assert np.array_equal(rle_decode({"size": ref["size"], "counts": ref["counts"].decode()}), m)


def test_model_errors(tmp_path, exported):
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(M2FError, match=r"junk.onnx is not an ONNX model \(its bytes do not parse\)"):
        Predictor(tmp_path / "junk.onnx")
    from onnx import TensorProto, helper, save

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
         str(tmp_path / "foreign.onnx"))
    with pytest.raises(MetadataError, match="carries no m2f metadata"):
        Predictor(tmp_path / "foreign.onnx")
    with pytest.raises(M2FError, match="does not exist"):
        Predictor(tmp_path / "none.onnx")
    with pytest.raises(M2FError, match="cannot tell what model.txt is"):
        (tmp_path / "model.txt").write_text("x")
        Predictor(tmp_path / "model.txt")
    with pytest.raises(M2FError, match="no CUDAExecutionProvider"):
        Predictor(exported[1], providers=["CUDAExecutionProvider"])


def test_engine_without_sidecar_is_explained(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (its libraries need an NVIDIA GPU machine)")
    (tmp_path / "m.engine").write_bytes(b"x")
    with pytest.raises(MetadataError, match="sidecar"):
        Predictor(tmp_path / "m.engine")


def test_camera_that_cannot_open(tmp_path, exported, capsys):
    assert main(["infer", str(exported[1]), "97", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot open camera 97" in err and err.count("\n") == 1


def test_infer_cli_images_and_folder(tmp_path, exported, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, shape in enumerate([(64, 80, 3), (50, 50)]):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    assert main(["infer", str(exported[1]), str(folder), "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    # numeric file stems are the COCO image ids
    assert [im["image_id"] for im in results["images"]] == [0, 1] and not results["interrupted"]
    assert not results["failed"]
    instances = json.loads((out / "instances.json").read_text())
    assert {r["image_id"] for r in instances} <= {0, 1} and all("counts" in r["segmentation"] for r in instances)
    pan = np.asarray(Image.open(out / "0.panoptic.png")).astype(np.int64)
    segs = json.loads((out / "0.segments.json").read_text())["segments_info"]
    ids = pan[..., 0] + 256 * pan[..., 1] + 65536 * pan[..., 2]
    assert {s["id"] for s in segs} == set(np.unique(ids)) - {0}
    assert all(int((ids == s["id"]).sum()) == s["area"] for s in segs)
    assert (out / "0.overlay.png").exists() and (out / "1.semantic.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["infer", str(exported[1]), str(empty), "-o", str(out)]) == 2
    assert "holds no images" in capsys.readouterr().err


def _video(path, frames, size=(96, 64)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()


def _interrupted_video_run(tmp_path, model, sig: int, frames_first: int):
    """`m2f infer` on a 400-frame video, sent ``sig`` once ``frames_first`` frames are on disk (or after 120 s)
    -> (return code, stdout, stderr, results.json, output folder)."""
    video = tmp_path / "clip.avi"
    _video(video, 400)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "m2f", "infer", str(model), str(video), "-o", str(out),
                             "--no-overlay"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "clip").glob("*.segments.json"))) < frames_first:
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr, json.loads((out / "results.json").read_text()), out


def test_video_and_interrupt_keeps_results(tmp_path, exported):
    code, stdout, stderr, results, out = _interrupted_video_run(tmp_path, exported[1], signal.SIGINT, 3)
    assert code == 130, stderr
    assert results["interrupted"] and 3 <= len(results["images"]) < 400
    done = {int(im["file_name"].rsplit("#", 1)[1]) for im in results["images"]}
    on_disk = {int(p.name[6:12]) for p in (out / "clip").glob("*.segments.json")}
    assert done == on_disk  # every finished frame is complete on disk, nothing half-written
    assert not list(out.rglob(".*tmp"))
    json.loads((out / "instances.json").read_text())
    assert "interrupted" in stdout


@pytest.mark.parametrize("drop", ["none", "latest"])
def test_frame_policies(tmp_path, drop):
    from m2f.runtime.stream import RateMeter, frames

    video = tmp_path / "v.avi"
    _video(video, 60)
    seen = []
    for frame in frames(str(video), drop=drop):
        assert frame.image.shape == (64, 96, 3) and frame.image.dtype == np.uint8
        seen.append(frame.index)
        # a slow consumer (50 ms a frame; decoding one of these takes well under 1 ms): with "latest" the reader
        # runs ahead and the frames in between are dropped
        time.sleep(0.05 if drop == "latest" else 0)
    assert seen == sorted(set(seen)) and seen[0] >= 0
    if drop == "none":
        assert seen == list(range(60))
    else:
        # the last frame of a file is always delivered; a reader that decodes the whole file before the consumer's
        # first call (these frames take well under 1 ms each) leaves only that one
        assert 1 <= len(seen) <= 30 and seen[-1] == 59
        assert seen != list(range(len(seen)))  # some frames were skipped
    meter = RateMeter()
    meter.add({"pre": 0.001, "infer": 0.002})
    assert "1 frames" in meter.line(dropped=3) and "dropped 3" in meter.line(dropped=3)


def test_static_canvas_fits_every_image(tmp_path, capsys):
    """A landscape static canvas takes square and portrait images: shrunk further to fit (aspect kept), said once
    per run, the scale recorded. The model's test size is 96/160, so a 100x100 image is 96x96 by the reference
    resize and 64x64 on a 64x96 canvas (scale 2/3); a 150x100 portrait is 144x96, then 64x43 (scale 64/144)."""
    import warnings

    from m2f.errors import M2FWarning
    from m2f.export.onnx_export import ExportOptions, export_onnx

    from .conftest import confident_model

    path = export_onnx(confident_model(), tmp_path / "s.onnx", ExportOptions(height=64, width=96)).path
    predictor = Predictor(path)
    rng = np.random.default_rng(0)
    square, portrait = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((100, 100, 3), (150, 100, 3)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = predictor.predict(square)
        second = predictor.predict(portrait)
    assert [str(w.message)[:55] for w in caught] == ["a 100x100 image does not fit this model's static 64x96 "]
    assert caught[0].category is M2FWarning and "shrunk further by 0.67" in str(caught[0].message)
    assert (first.input_size, second.input_size) == ((64, 64), (64, 43))
    assert first.fit_scale == pytest.approx(2 / 3) and second.fit_scale == pytest.approx(64 / 144)
    assert first.semantic.shape == (100, 100) and second.panoptic.shape == (150, 100)
    landscape = predictor.predict(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8))  # 96x160 -> fits? no: 64x96
    assert landscape.input_size == (58, 96) and landscape.fit_scale == pytest.approx(96 / 160)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(square).save(folder / "a.png")
    Image.fromarray(portrait).save(folder / "b.png")
    assert main(["infer", str(path), str(folder), "-o", str(tmp_path / "out"), "--no-overlay"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and notes[0].startswith("m2f infer: note: a 100x100 image does not fit")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [im["fit_scale"] for im in results["images"]] == [round(2 / 3, 4), round(64 / 144, 4)]

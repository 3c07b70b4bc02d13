"""Batch runs as users run them: a bad file costs only itself, names and ids never collide, the output folder is
never read back, signals and failed runs leave the summaries right, and instance files evaluate with COCOeval."""
import json
import signal

import numpy as np
import pytest
from PIL import Image

from m2f.cli import main
from m2f.runtime import HostOptions, Predictor
from m2f.runtime.batch import expand_inputs

from .test_io_and_errors import _interrupted_video_run


def _images(folder, names, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_a_corrupt_image_costs_only_itself(tmp_path, exported, capsys):
    folder = _images(tmp_path / "in", ["a.png", "c.png"])
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    out = tmp_path / "out"
    assert main(["infer", str(exported[1]), str(folder), "-o", str(out), "--no-overlay"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("m2f infer: skipped ") and "b.png" in err[0]
    results = json.loads((out / "results.json").read_text())
    assert [im["file_name"].rsplit("/", 1)[1] for im in results["images"]] == ["a.png", "c.png"]
    assert len(results["failed"]) == 1 and results["failed"][0]["input"].endswith("b.png")
    assert "cannot read image" in results["failed"][0]["error"]
    assert (out / "a.panoptic.png").exists() and (out / "c.panoptic.png").exists()
    assert not list(out.glob("b.*"))


def test_same_stem_gets_distinct_names_and_ids(tmp_path, exported):
    _images(tmp_path / "x", ["a.png", "a.jpg"])
    _images(tmp_path / "y", ["a.png"], seed=1)
    items = expand_inputs([str(tmp_path / "x"), str(tmp_path / "y")])
    # stems collide: file names; a.png still collides: the folder too
    assert [it.name for it in items] == ["a.jpg", "x_a.png", "y_a.png"]
    assert [it.image_id for it in items] == [1, 2, 3]
    out = tmp_path / "out"
    assert main(["infer", str(exported[1]), str(tmp_path / "x"), str(tmp_path / "y"), "-o", str(out),
                 "--no-overlay"]) == 0
    assert {p.name for p in out.glob("*.segments.json")} == {f"{n}.segments.json" for n in
                                                            ("a.jpg", "x_a.png", "y_a.png")}
    assert [im["image_id"] for im in json.loads((out / "results.json").read_text())["images"]] == [1, 2, 3]


def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, exported):
    folder = _images(tmp_path / "photos", ["1.png", "2.png"])
    out = folder / "results"
    for _ in range(2):  # the second run sees the first run's PNGs inside photos/results/ and must ignore them
        assert main(["infer", str(exported[1]), str(folder), "-o", str(out)]) == 0
        assert len(json.loads((out / "results.json").read_text())["images"]) == 2


def test_a_run_with_no_success_keeps_earlier_summaries(tmp_path, exported, capsys):
    good = _images(tmp_path / "good", ["1.png"])
    out = tmp_path / "out"
    assert main(["infer", str(exported[1]), str(good), "-o", str(out)]) == 0
    before = (out / "results.json").read_text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_text("not an image")
    (bad / "y.png").write_text("not an image either")
    capsys.readouterr()
    assert main(["infer", str(exported[1]), str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("m2f infer: error: none of the 2 inputs could be processed")
    assert "earlier results" in err[-1] and (out / "results.json").read_text() == before


def test_sigterm_is_handled_like_ctrl_c(tmp_path, exported):
    code, _, stderr, results, _ = _interrupted_video_run(tmp_path, exported[1], signal.SIGTERM, 2)
    assert code == 143, stderr
    assert results["interrupted"] and 2 <= len(results["images"]) < 400


@pytest.mark.parametrize("argv,message", [
    (["--threshold", "1.5"], "1.5 is outside [0, 1]"),
    (["--overlap-threshold", "-0.1"], "-0.1 is outside [0, 1]"),
    (["--score-threshold", "2"], "2.0 is outside [0, 1]"),
    (["--max-frames", "0"], "0 is not a positive count"),
    (["--threads", "-2"], "-2 is not a positive count"),
])
def test_options_are_checked_before_anything_runs(tmp_path, exported, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["infer", str(exported[1]), str(tmp_path), "-o", str(tmp_path / "o"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_predictor_checks_thresholds(exported):
    from m2f.errors import ArgumentError

    with pytest.raises(ArgumentError, match="the score threshold must be between 0 and 1, not 1.2"):
        Predictor(exported[1], HostOptions(score_threshold=1.2))


def test_show_without_gui_opencv_is_one_sentence(tmp_path, exported, capsys):
    cv2 = pytest.importorskip("cv2")
    try:
        cv2.namedWindow("probe")
        cv2.destroyAllWindows()
        pytest.skip("this OpenCV can open windows here (GUI build with a display)")
    except cv2.error:
        pass
    folder = _images(tmp_path / "in", ["1.png"])
    assert main(["infer", str(exported[1]), str(folder), "-o", str(tmp_path / "o"), "--show"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--show needs OpenCV with GUI support" in err and "opencv-python" in err


def test_score_threshold_filters_and_overlay_draws_only_confident_instances(exported):
    from m2f.runtime.formats import overlay
    from m2f.runtime.results import Instance, Result

    image = np.full((40, 60, 3), 100, np.uint8)
    high, low = np.zeros((40, 60), bool), np.zeros((40, 60), bool)
    high[5:15, 5:15] = True
    low[25:35, 40:55] = True
    result = Result(40, 60, instances=[Instance(0, "a", 0.9, high, 0), Instance(1, "b", 0.2, low, 1)])
    drawn = overlay(image, result, ["a", "b"], "instance", score_threshold=0.5)
    assert drawn.shape[1] == 60 + 180  # the legend column
    assert (drawn[27:33, 42:53] == 100).all()  # the low-scoring instance is not painted
    assert not (drawn[7:13, 7:13] == 100).all()  # the confident one is
    everything = overlay(image, result, ["a", "b"], "instance", score_threshold=0.0)
    assert not (everything[27:33, 42:53] == 100).all()
    scores = [i.score for i in Predictor(exported[1], HostOptions(score_threshold=0.5)).predict(image).instances]
    assert scores and min(scores) >= 0.5
    all_scores = [i.score for i in Predictor(exported[1]).predict(image).instances]
    assert len(all_scores) > len(scores) and sorted(scores, reverse=True) == scores


def test_instances_json_evaluates_with_cocoeval_against_ground_truth(tmp_path, bundled_onnx):
    """The bundled model on the bundled samples: instances.json uses the dataset's category ids (1..5 for the
    synthetic things) and the images' integer ids, so pycocotools' COCOeval takes it as is against a COCO
    instances file written from the samples' panoptic ground truth."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from m2f.assets import SAMPLES, sample_annotations

    panoptic = json.loads(sample_annotations().read_text())
    annotations = []
    for ann in panoptic["annotations"]:
        rgb = np.asarray(Image.open(SAMPLES / "panoptic" / ann["file_name"])).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        for seg in ann["segments_info"]:
            if seg["category_id"] <= 5:  # the synthetic things are categories 1..5
                rle = mask_utils.encode(np.asfortranarray((ids == seg["id"]).astype(np.uint8)))
                annotations.append({"id": len(annotations) + 1, "image_id": ann["image_id"],
                                    "category_id": seg["category_id"], "iscrowd": 0, "area": seg["area"],
                                    "bbox": seg["bbox"], "segmentation": {"size": rle["size"],
                                                                          "counts": rle["counts"].decode()}})
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({"images": panoptic["images"], "annotations": annotations,
                                   "categories": [c for c in panoptic["categories"] if c["isthing"]]}))
    out = tmp_path / "out"
    assert main(["infer", str(bundled_onnx), str(SAMPLES / "images"), "-o", str(out), "--no-overlay"]) == 0
    detections = json.loads((out / "instances.json").read_text())
    assert {d["image_id"] for d in detections} <= {0, 1, 2}
    assert {d["category_id"] for d in detections} <= set(range(1, 6))
    gt = COCO(str(gt_file))
    evaluator = COCOeval(gt, gt.loadRes(str(out / "instances.json")), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] > 0.4  # mask AP over IoU .5:.95 on the three samples (held-out AP is ~0.65)

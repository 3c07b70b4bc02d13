"""The synthetic panoptic dataset: deterministic, valid COCO panoptic, read back by the shared reader."""
import hashlib
import json

import numpy as np

from m2f.datasets.coco import CocoPanoptic
from m2f.datasets.synthetic import THINGS, generate


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_by_seed(tmp_path):
    generate(tmp_path / "a", 4, seed=3)
    generate(tmp_path / "b", 4, seed=3)
    generate(tmp_path / "c", 4, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_coco_panoptic_contents_and_reader(tmp_path):
    path = generate(tmp_path, 12, seed=0)
    data = json.loads(path.read_text())
    assert len(data["images"]) == len(data["annotations"]) == 12
    ds = CocoPanoptic(path)
    assert ds.class_names[: len(THINGS)] == list(THINGS) and ds.thing_ids == list(range(len(THINGS)))
    things_per_image, partially_hidden = [], 0
    for i in range(len(ds)):
        sample = ds[i]
        ann = data["annotations"][i]
        assert sample.image.shape == (192, 256, 3) and sample.masks.shape[1:] == (192, 256)
        assert [int(m.sum()) for m in sample.masks] == [s["area"] for s in ann["segments_info"]]
        assert not (sample.masks.sum(0) > 1).any()  # panoptic: segments never overlap
        assert sample.masks.any(0).mean() > 0.99  # stuff bands cover the background
        things_per_image.append(int(sample.isthing.sum()))
        for s, m in zip(ann["segments_info"], sample.masks):
            if s["category_id"] <= len(THINGS):
                x, y, w, h = s["bbox"]
                partially_hidden += m.sum() < 0.5 * w * h  # occluded or thin shapes fill little of their box
    assert min(things_per_image) >= 1 and max(things_per_image) >= 4
    assert partially_hidden > 0
    areas = [s["area"] for a in data["annotations"] for s in a["segments_info"] if s["category_id"] <= len(THINGS)]
    assert min(areas) < 300 and max(areas) > 3000  # scale variety
    assert np.all([len(a["segments_info"]) > 0 for a in data["annotations"]])

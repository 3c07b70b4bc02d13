"""m2f.fileio: a file appears whole or not at all, and a failed write leaves what was there before."""
import json

import pytest

from m2f.fileio import atomic_path, write_json


def test_success_renames_into_place(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_path(target) as tmp:
            tmp.write_text("half of a new file")
            raise error("interrupted while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_failure_before_anything_is_written(tmp_path):
    target = tmp_path / "x.pkl"
    with pytest.raises(ValueError):
        with atomic_path(target):
            raise ValueError("no data")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_writer_leaves_nothing_on_failure(tmp_path):
    """model/checkpoint_io used to leave its .tmp behind when pickling failed."""
    torch = pytest.importorskip("torch")
    from m2f.model.checkpoint_io import save_detectron2_pkl

    class Unpicklable:  # passes the tensor-to-numpy step, then fails inside pickle.dump
        def detach(self):
            return self

        cpu = detach

        def numpy(self):
            return lambda: None

    with pytest.raises(Exception, match="pickle"):
        save_detectron2_pkl({"w": torch.zeros(2), "bad": Unpicklable()}, tmp_path / "model.pkl")
    assert list(tmp_path.iterdir()) == []

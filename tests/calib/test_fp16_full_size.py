"""FP16 at full size: the R50 COCO preset (random weights) at 800x1344, where fp16 cannot represent every pixel
coordinate. With m2f's fp32 islands the deformable sampling keeps fp32 coordinates, so the pixel decoder's sampled
features (the encoder output at every level) of the fp16 graph match the fp32 graph's to fp16 storage precision.
Both graphs run in ONNX Runtime; the fp32 graph is the reference."""
import numpy as np
import onnx
import pytest
import torch

from m2f.calib.session import open_session
from m2f.export.onnx_export import ExportOptions, export_onnx
from m2f.calib.fp16 import to_fp16
from m2f.model.mask2former import Mask2Former
from m2f.model.presets import get_preset

LEVELS = ("tap.pixel_decoder.level0", "tap.pixel_decoder.level1", "tap.pixel_decoder.level2")
RELATIVE = 2e-2  # of each level's largest magnitude: fp16 rounding through six encoder layers


@pytest.mark.slow
def test_sampled_features_match_at_800x1344(tmp_path):
    torch.manual_seed(0)
    model = Mask2Former(get_preset("coco-panoptic-r50")).eval()
    fp32 = export_onnx(model, tmp_path / "r50.onnx", ExportOptions(height=800, width=1344, taps=True)).path
    graph = onnx.load(str(fp32))
    half = to_fp16(graph, set()).model
    floors = [n for n in half.graph.node if n.op_type == "Floor"]
    assert floors, "the portable graph computes sampling coordinates with Floor"
    rng = np.random.default_rng(0)
    feeds = {"image": rng.integers(0, 256, (1, 800, 1344, 3), dtype=np.uint8),
             "valid_size": np.array([[800, 1344]], np.int32)}
    want = dict(zip(LEVELS, open_session(graph, 2).run(list(LEVELS), feeds)))
    got = dict(zip(LEVELS, open_session(half, 2).run(list(LEVELS), feeds)))
    for level in LEVELS:
        scale = float(np.abs(want[level]).max())
        assert np.isfinite(got[level]).all(), level
        assert float(np.abs(got[level].astype(np.float32) - want[level]).max()) <= RELATIVE * scale, level

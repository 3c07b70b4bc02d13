"""detectron2 ResizeShortestEdge geometry (int(x + 0.5) rounding, detectron2's float order) and padding to 32."""
import pytest

from m2f.geometry import padded_size, shortest_edge_size


@pytest.mark.parametrize("hw,short,max_size,expected", [
    ((480, 640), 800, 1333, (800, 1067)),  # 640 * 800/480 = 1066.67
    ((640, 480), 800, 1333, (1067, 800)),
    ((500, 2000), 800, 1333, (333, 1333)),  # long side capped: 500 * 1333/2000 = 333.25
    ((427, 640), 800, 1333, (800, 1199)),  # 640 * 800/427 = 1199.06
    ((1024, 2048), 1024, 2048, (1024, 2048)),
    ((17, 23), 800, 1333, (800, 1082)),  # 23 * 800/17 = 1082.35
    ((512, 683), 512, 2048, (512, 683)),
    # exact .5 ties decided by detectron2's float order: the short side is set to 800 (not 88 * 800/88), the long
    # side 176 * (800/88) = 1600.0000000000002, so 800 * (1333/1600.0000000000002) = 666.4999999999999 -> 666
    ((88, 176), 800, 1333, (666, 1333)),
    ((176, 88), 800, 1333, (1333, 666)),
])
def test_shortest_edge(hw, short, max_size, expected):
    assert shortest_edge_size(*hw, short, max_size) == expected


def test_runtime_and_reference_pipeline_agree_on_every_size():
    """The PyTorch reference pipeline has its own implementation (written from detectron2's); a change to either
    one's rounding shows up here before it shows up as a one-pixel parity failure."""
    pytest.importorskip("torch")
    from m2f.model.reference_pipeline import resize_shortest_edge_size

    for short, max_size in ((800, 1333), (192, 320), (512, 2048), (640, 2560), (1024, 2048)):
        for h in range(1, 1500, 3):
            for w in range(1, 1500, 7):
                assert shortest_edge_size(h, w, short, max_size) == \
                    resize_shortest_edge_size(h, w, short, max_size), (h, w, short, max_size)


def test_padded_size():
    assert padded_size(800, 1067) == (800, 1088)
    assert padded_size(333, 1333) == (352, 1344)
    assert padded_size(64, 64) == (64, 64)

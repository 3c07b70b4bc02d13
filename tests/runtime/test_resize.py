"""detectron2 ResizeShortestEdge geometry (int(x + 0.5) rounding) and padding to a multiple of 32."""
import pytest

from m2f.runtime.resize import padded_size, shortest_edge_size


@pytest.mark.parametrize("hw,short,max_size,expected", [
    ((480, 640), 800, 1333, (800, 1067)),  # 640 * 800/480 = 1066.67
    ((640, 480), 800, 1333, (1067, 800)),
    ((500, 2000), 800, 1333, (333, 1333)),  # long side capped: 500 * 1333/2000 = 333.25
    ((427, 640), 800, 1333, (800, 1199)),  # 640 * 800/427 = 1199.06
    ((1024, 2048), 1024, 2048, (1024, 2048)),
    ((17, 23), 800, 1333, (800, 1082)),  # 23 * 800/17 = 1082.35
    ((512, 683), 512, 2048, (512, 683)),
])
def test_shortest_edge(hw, short, max_size, expected):
    assert shortest_edge_size(*hw, short, max_size) == expected


def test_padded_size():
    assert padded_size(800, 1067) == (800, 1088)
    assert padded_size(333, 1333) == (352, 1344)
    assert padded_size(64, 64) == (64, 64)

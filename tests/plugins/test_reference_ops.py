"""The per-op references in plugins/ against naive float64 implementations written from the op contracts."""
import math

import numpy as np
import pytest
import torch

from m2f.plugins.masked_attention import reference as ma_reference
from m2f.plugins.ms_deform_attn import lowering as msda_lowering
from m2f.plugins.ms_deform_attn import reference as msda_reference
from m2f.validate.compare import TOLERANCES


def naive_msda(value, shapes, locations, weights):
    """Loop over every (n, q, head, level, point): bilinear with pixel = loc * size - 0.5, zero outside."""
    n, s, m, d = value.shape
    _, lq, _, nl, np_, _ = locations.shape
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = np.zeros((n, lq, m, d))
    for b in range(n):
        for q in range(lq):
            for h in range(m):
                for lvl, (hh, ww) in enumerate(shapes):
                    for p in range(np_):
                        x = locations[b, q, h, lvl, p, 0] * ww - 0.5
                        y = locations[b, q, h, lvl, p, 1] * hh - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        acc = np.zeros(d)
                        corners = ((y0, x0, (y0 + 1 - y) * (x0 + 1 - x)), (y0, x0 + 1, (y0 + 1 - y) * (x - x0)),
                                   (y0 + 1, x0, (y - y0) * (x0 + 1 - x)), (y0 + 1, x0 + 1, (y - y0) * (x - x0)))
                        for yy, xx, wgt in corners:
                            if 0 <= yy < hh and 0 <= xx < ww:
                                acc += wgt * value[b, starts[lvl] + yy * ww + xx, h]
                        out[b, q, h] += weights[b, q, h, lvl, p] * acc
    return out.reshape(n, lq, m * d)


@pytest.mark.parametrize("shapes,heads,dim,points,lq", [
    ([(3, 5)], 1, 4, 1, 1),
    ([(4, 6), (2, 3)], 2, 8, 2, 7),
    ([(5, 7), (3, 4), (2, 2), (1, 1)], 3, 5, 4, 6),
])
def test_msda_reference_matches_naive(shapes, heads, dim, points, lq):
    rng = np.random.default_rng(0)
    n, s, nl = 2, sum(h * w for h, w in shapes), len(shapes)
    value = rng.standard_normal((n, s, heads, dim))
    loc = rng.uniform(-0.2, 1.2, (n, lq, heads, nl, points, 2))  # includes samples outside the map
    # and samples on and past the edges, in pixels: the first column (row), the last, the border just past them,
    # and far outside (the portable lowering clamps to its zero border)
    for lvl, (hh, ww) in enumerate(shapes):
        for axis, size in ((0, ww), (1, hh)):
            edges = np.array([-7.0, -1.0, -0.5, 0.0, size - 1.0, size - 0.5, size, size + 4.0])
            plane = loc[0, :, :, lvl, :, axis]  # a view: writes reach loc
            count = min(edges.size, plane.size)
            plane.flat[:count] = (edges[:count] + 0.5) / size
    w = rng.random((n, lq, heads, nl, points))
    w /= w.reshape(n, lq, heads, -1).sum(-1)[..., None, None]
    starts = torch.tensor(np.cumsum([0] + [h * ww for h, ww in shapes])[:-1], dtype=torch.int32)
    ref = naive_msda(value, shapes, loc, w)
    got64 = msda_reference.reference(torch.from_numpy(value), torch.tensor(shapes, dtype=torch.int32), starts,
                                     torch.from_numpy(loc), torch.from_numpy(w))
    np.testing.assert_allclose(got64.numpy(), ref, atol=1e-12)
    got32 = msda_reference.reference(*(torch.from_numpy(a).float() for a in (value,)), shapes, None,
                                     torch.from_numpy(loc).float(), torch.from_numpy(w).float())
    np.testing.assert_allclose(got32.numpy(), ref, atol=TOLERANCES["op_fp32_vs_fp64"])
    port64 = msda_lowering.portable(torch.from_numpy(value), shapes, starts, torch.from_numpy(loc),
                                     torch.from_numpy(w))
    np.testing.assert_allclose(port64.numpy(), ref, atol=1e-12)
    port32 = msda_lowering.portable(torch.from_numpy(value).float(), shapes, None, torch.from_numpy(loc).float(),
                                     torch.from_numpy(w).float())
    np.testing.assert_allclose(port32.numpy(), ref, atol=TOLERANCES["op_fp32_vs_fp64"])


def test_msda_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="do not match value length"):
        msda_reference.reference(torch.zeros(1, 10, 1, 2), [(3, 3)], None, torch.zeros(1, 1, 1, 1, 1, 2),
                                 torch.zeros(1, 1, 1, 1, 1))


def naive_masked_attention(q, k, v, logits):
    n, m, nq, d = q.shape
    out = np.zeros_like(q)
    for b in range(n):
        for i in range(nq):
            blocked = 1 / (1 + np.exp(-logits[b, i].astype(np.float32))) < 0.5 if logits is not None else None
            if blocked is not None and blocked.all():
                blocked[:] = False
            for h in range(m):
                scores = k[b, h] @ q[b, h, i] / math.sqrt(d)
                if blocked is not None:
                    scores = np.where(blocked, -np.inf, scores)
                p = np.exp(scores - scores.max())
                out[b, h, i] = (p / p.sum()) @ v[b, h]
    return out


def masked_attention_case(seed: int, with_mask: bool):
    """float64 q, k, v [N=2, M=3, *, D=8] (5 queries, 13 keys) and mask logits [2, 5, 13] (or None) with the two
    rows the threshold must get right: every key blocked, and logits that round to sigmoid 0.5 in float32."""
    rng = np.random.default_rng(seed)
    n, m, nq, s, d = 2, 3, 5, 13, 8
    q, k, v = (rng.standard_normal(shape) for shape in ((n, m, nq, d), (n, m, s, d), (n, m, s, d)))
    logits = rng.standard_normal((n, nq, s)) * 2 if with_mask else None
    if with_mask:
        logits[0, 1] = -5.0  # every key blocked: the row must attend to all keys
        logits[1, 2] = -1e-9  # sigmoid rounds to 0.5 in float32: NOT blocked (threshold is on sigmoid, not sign)
    return q, k, v, logits


@pytest.mark.parametrize("with_mask", [True, False])
def test_masked_attention_matches_naive(with_mask):
    q, k, v, logits = masked_attention_case(1, with_mask)
    ref = naive_masked_attention(q, k, v, logits)
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    got = ma_reference.reference(t(q), t(k), t(v), t(logits))
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    got32 = ma_reference.reference(t(q).float(), t(k).float(), t(v).float(),
                                       None if logits is None else t(logits).float())
    assert torch.isfinite(got32).all()
    np.testing.assert_allclose(got32.numpy(), ref, atol=TOLERANCES["op_fp32_vs_fp64"])


def test_blocked_keys_threshold_is_on_sigmoid_in_fp32():
    logits = torch.tensor([[[-1e-9, -1e-3, 0.0, 1e-3, -20.0]]], dtype=torch.float16)
    assert ma_reference.blocked_keys(logits).tolist() == [[[False, True, False, False, True]]]
    assert ma_reference.blocked_keys(torch.full((1, 2, 4), -3.0)).any().item() is False  # empty-row rule


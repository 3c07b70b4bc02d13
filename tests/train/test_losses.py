"""Matcher and criterion (docs/model.md §3) vs brute force and float64 hand computations; a few steps reduce the
loss."""
import itertools
import math

import numpy as np
import pytest
import torch

pytest.importorskip("scipy", reason="scipy is a training/test dependency (pip install m2f[train])")

from m2f.train.criterion import LossConfig, SetCriterion, class_loss, mask_losses  # noqa: E402
from m2f.train.matcher import MatcherWeights, cost_matrix, hungarian_match  # noqa: E402
from m2f.train.point_sampling import point_sample, uncertain_points  # noqa: E402


def _case(seed, q=5, g=3, k=4, h=6, w=8):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, q, k + 1, generator=gen) * 2
    masks = torch.randn(1, q, h, w, generator=gen) * 3
    target = {"labels": torch.randint(0, k, (g,), generator=gen),
              "masks": (torch.rand(g, 4 * h, 4 * w, generator=gen) > 0.5).float()}
    return logits, masks, target


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("q,g", [(5, 3), (4, 4), (6, 1)])
def test_matcher_equals_brute_force(seed, q, g):
    logits, masks, target = _case(seed, q=q, g=g)
    weights = MatcherWeights(num_points=64)
    (rows, cols), = hungarian_match(logits, masks, [target], weights, torch.Generator().manual_seed(seed))
    points = torch.rand(64, 2, generator=torch.Generator().manual_seed(seed))  # the same draw as the matcher's
    cost = cost_matrix(logits[0], masks[0], target["labels"], target["masks"], points, weights).double().numpy()
    best = min(sum(cost[p[j], j] for j in range(g)) for p in itertools.permutations(range(q), g))
    assert len(rows) == g and sorted(cols.tolist()) == list(range(g))
    assert cost[rows.numpy(), cols.numpy()].sum() == pytest.approx(best, abs=1e-9)


def test_cost_matrix_by_hand():
    logits, masks, target = _case(3)
    points = torch.rand(16, 2, generator=torch.Generator().manual_seed(1))
    w = MatcherWeights(num_points=16)
    got = cost_matrix(logits[0], masks[0], target["labels"], target["masks"], points, w).double().numpy()
    x = point_sample(masks[0].double(), points.double()[None].expand(5, -1, -1)).numpy()
    t = point_sample(target["masks"].double(), points.double()[None].expand(3, -1, -1)).numpy()
    probs = torch.softmax(logits[0].double(), -1).numpy()
    sig = 1 / (1 + np.exp(-x))
    want = np.zeros((5, 3))
    for i in range(5):
        for j in range(3):
            bce = np.mean(-(t[j] * np.log(sig[i]) + (1 - t[j]) * np.log(1 - sig[i])))
            dice = 1 - (2 * (sig[i] * t[j]).sum() + 1) / (sig[i].sum() + t[j].sum() + 1)
            want[i, j] = 2.0 * -probs[i, target["labels"][j]] + 5.0 * bce + 5.0 * dice
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_class_loss_by_hand():
    logits = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(0))
    targets = [{"labels": torch.tensor([2, 0])}, {"labels": torch.tensor([4])}]
    matches = [(torch.tensor([1, 3]), torch.tensor([1, 0])), (torch.tensor([2]), torch.tensor([0]))]
    got = class_loss(logits, matches, targets, 0.1).item()
    classes = [[5, 0, 5, 2], [5, 5, 4, 5]]  # unmatched -> no-object (index 5)
    num = den = 0.0
    for b in range(2):
        for i in range(4):
            c = classes[b][i]
            lse = math.log(sum(math.exp(v) for v in logits[b, i].double().tolist()))
            wgt = 0.1 if c == 5 else 1.0
            num += wgt * (lse - logits[b, i, c].item())
            den += wgt
    assert got == pytest.approx(num / den, rel=1e-6)


def test_mask_losses_by_hand():
    gen = torch.Generator().manual_seed(2)
    x, t = torch.randn(3, 10, generator=gen) * 2, (torch.rand(3, 10, generator=gen) > 0.4).float()
    bce, dice = mask_losses(x, t, num_masks=2.5)
    xs, ts = x.double().numpy(), t.double().numpy()
    s = 1 / (1 + np.exp(-xs))
    want_bce = sum(np.mean(-(ts[m] * np.log(s[m]) + (1 - ts[m]) * np.log(1 - s[m]))) for m in range(3)) / 2.5
    want_dice = sum(1 - (2 * (s[m] * ts[m]).sum() + 1) / (s[m].sum() + ts[m].sum() + 1) for m in range(3)) / 2.5
    assert bce.item() == pytest.approx(want_bce, rel=1e-5) and dice.item() == pytest.approx(want_dice, rel=1e-5)


def test_importance_sampling_takes_the_most_uncertain_points():
    logits = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0)) * 4
    gen = torch.Generator().manual_seed(5)
    points = uncertain_points(logits, 40, 3.0, 0.75, gen)
    assert points.shape == (2, 40, 2) and (points >= 0).all() and (points <= 1).all()
    candidates = torch.rand(2, 120, 2, generator=torch.Generator().manual_seed(5))  # the same first draw
    unc = point_sample(logits, candidates).abs()
    chosen = point_sample(logits, points[:, :30]).abs()
    assert (chosen.max(1).values <= unc.sort(1).values[:, 29] + 1e-6).all()


def test_a_few_steps_reduce_the_loss():
    from ..model.helpers import random_model, tiny_config

    torch.manual_seed(0)
    model = random_model(tiny_config("resnet")).train()
    x = torch.randn(2, 3, 64, 64)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    disc = (((yy - 20) ** 2 + (xx - 40) ** 2) < 200).float()
    targets = [{"labels": torch.tensor([1, 4]), "masks": torch.stack([disc, 1 - disc])},
               {"labels": torch.tensor([2]), "masks": (yy < 32).float()[None]}]
    criterion = SetCriterion(LossConfig(num_points=256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        out = model(x, return_aux=True)
        loss = criterion(out, targets, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        losses.append(loss["loss"].item())
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_dice_2"} <= set(loss)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0], losses

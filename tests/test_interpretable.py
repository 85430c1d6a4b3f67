"""Tests of helpers.interpretable (interpretable CNN, CVPR 2018): templates, mask, filter loss, interpretable layers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from helpers.interpretable import (
    FilterCategories,
    FilterLoss,
    FilterLossConfig,
    apply_mask,
    exact_filter_loss,
    filter_loss,
    interpretable_layers,
    log_template_priors,
    make_interpretable,
    mask_of_template,
    negative_template,
    part_mask,
    positive_templates,
    select_mu,
    set_loss_epoch,
    template_scores,
    unit_grid,
)
from helpers.models.geometry import feature_size, layer_geometry
from helpers.models.nets import alexnet, small_vgg, vgg16

pytestmark = pytest.mark.usefixtures("one_thread")


def _template_entry(i: int, j: int, mu: tuple[int, int], h: int, w: int) -> float:
    """t_ij of T_mu written out from Sec. 3 (per-axis normalised L1 distance), plain Python."""
    tau = 0.5 / (h * w)
    return tau * max(1 - 4 * (abs(i - mu[0]) / h + abs(j - mu[1]) / w), -1)


def _peaked_maps(n_pos: int, n_neg: int, channels: int, n: int, amplitude: float, seed: int = 0):
    """Positives: one template-shaped peak of random height >= amplitude at a random unit; negatives: near zero."""
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randint(0, n, (n_pos, channels, 2), generator=generator)
    height = amplitude * (1 + 0.5 * torch.rand(n_pos, channels, 1, 1, generator=generator))
    positives = height * part_mask(mu, n, n) + 0.05 * torch.rand(n_pos, channels, n, n, generator=generator)
    negatives = 0.05 * torch.rand(n_neg, channels, n, n, generator=generator)
    flags = torch.cat([torch.ones(n_pos, channels), torch.zeros(n_neg, channels)]).bool()
    return torch.cat([positives, negatives]), flags, mu


def _approx_grad(x: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Normalised Eq. (4) gradient, unweighted, with running statistics set by this batch."""
    leaf = x.clone().requires_grad_()
    _, loss = FilterLoss(x.shape[1], x.shape[-2:], FilterLossConfig(weighting="none"))(leaf, positive)
    loss.backward()
    return leaf.grad


def _exact_grad(x: torch.Tensor) -> torch.Tensor:
    leaf = x.clone().requires_grad_()
    exact_filter_loss(leaf).sum().backward()
    return leaf.grad


# ---------------------------------------------------------------------------------------------------- templates

def test_templates_match_the_formula_written_out_by_hand():
    tau = 0.5 / 9
    third = 1 / 3
    corner = tau * torch.tensor([[1, -third, -1], [-third, -1, -1], [-1, -1, -1]])
    centre = tau * torch.tensor([[-1, -third, -1], [-third, 1, -third], [-1, -third, -1]])
    templates = positive_templates(3, 3)
    assert templates.shape == (9, 3, 3)
    torch.testing.assert_close(templates[0], corner)  # mu = (0, 0)
    torch.testing.assert_close(templates[4], centre)  # mu = (1, 1)
    torch.testing.assert_close(templates[8], corner.flip(0, 1))  # mu = (2, 2)
    # priors: alpha = 9/10, p(T_mu) = alpha/9 = 1/10, p(T-) = 1/10
    torch.testing.assert_close(log_template_priors(9).exp(), torch.full((10,), 0.1))
    # non-square 2 x 4, mu = (0, 1): unit (1, 3) is 1/2 + 2/4 = 1 away -> max(1 - 4, -1) = -1; unit (0, 2) -> 1 - 1
    rect = positive_templates(2, 4)[1]
    assert rect[1, 3] == pytest.approx(-0.5 / 8) and rect[0, 2] == pytest.approx(0.0, abs=1e-9)
    assert rect[0, 1] == pytest.approx(0.5 / 8)


def test_templates_with_other_tau_and_beta_and_the_mask_they_give():
    templates = positive_templates(5, 5, tau=2.0, beta=2.0)
    distance = [[(abs(i - 1) + abs(j - 2)) / 5 for j in range(5)] for i in range(5)]
    by_hand = 2.0 * torch.tensor(distance).mul(-2).add(1).clamp(min=-1)
    torch.testing.assert_close(templates[1 * 5 + 2], by_hand)  # mu = (1, 2), t = tau * max(1 - beta d, -1)
    torch.testing.assert_close(positive_templates(5, 5), positive_templates(5, 5, tau=0.5 / 25, beta=4.0))
    torch.testing.assert_close(negative_template(2, 3, tau=0.7), torch.full((2, 3), -0.7))
    torch.testing.assert_close(negative_template(4, 4), torch.full((4, 4), -0.5 / 16))
    grid = unit_grid(5, 5)
    torch.testing.assert_close(mask_of_template(positive_templates(5, 5)[7], 0.5 / 25), part_mask(grid[7], 5, 5))
    with pytest.raises(ValueError, match="beta"):
        positive_templates(3, 3, beta=0.0)


@pytest.mark.parametrize("h, w", [(4, 4), (3, 5)])
def test_scores_of_the_single_correlation_equal_a_naive_double_loop(h, w):
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    scores = template_scores(x)
    assert scores.shape == (2, 3, h * w + 1)
    for n in range(2):
        for c in range(3):
            for mu_i in range(h):
                for mu_j in range(w):
                    expected = sum(float(x[n, c, i, j]) * _template_entry(i, j, (mu_i, mu_j), h, w)
                                   for i in range(h) for j in range(w))
                    assert float(scores[n, c, mu_i * w + mu_j]) == pytest.approx(expected, rel=1e-5, abs=1e-7)
            assert float(scores[n, c, -1]) == pytest.approx(-0.5 / (h * w) * float(x[n, c].sum()), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- mask

def test_mask_forward_on_a_hand_example():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 1, 3] = 9.0  # the peak
    x[0, 0, 1, 2] = 2.0  # 1 unit away: mask 1 - 4/5 = 0.2
    x[0, 0, 4, 0] = 5.0  # far away: masked out
    mu = select_mu(x)
    assert mu.tolist() == [[[1, 3]]]
    expected_mask = torch.zeros(5, 5)
    expected_mask[1, 3] = 1.0
    for i, j in [(0, 3), (2, 3), (1, 2), (1, 4)]:
        expected_mask[i, j] = 0.2
    torch.testing.assert_close(part_mask(mu, 5, 5)[0, 0], expected_mask)
    expected = torch.zeros(5, 5)
    expected[1, 3], expected[1, 2] = 9.0, 0.4
    torch.testing.assert_close(apply_mask(x, mu)[0, 0], expected)


@pytest.mark.parametrize("mode", ["argmax", "centroid"])
def test_mask_backward_gradient_is_the_mask_and_the_mask_gets_none(mode):
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(2)).requires_grad_()
    mu = select_mu(x, mode)
    mask = part_mask(mu, 6, 6)
    assert not mu.requires_grad and not mask.requires_grad
    upstream = torch.rand(3, 2, 6, 6)
    (apply_mask(x, mu) * upstream).sum().backward()
    torch.testing.assert_close(x.grad, upstream * mask)


def test_tables_first_built_in_inference_mode_still_serve_autograd():
    x = torch.rand(2, 3, 5, 3)
    with torch.inference_mode():
        apply_mask(x, select_mu(x))  # the first use of 5 x 3 maps builds the cached tables
    leaf = x.clone().requires_grad_()
    apply_mask(leaf, select_mu(leaf)).sum().backward()
    torch.testing.assert_close(leaf.grad, part_mask(select_mu(x), 5, 3))


def test_centroid_mu_is_the_activation_weighted_centre():
    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 0, 2] = 1.0  # centroid (0, 1), an unactivated unit
    x[0, 1, 3, 3] = 3.0
    x[0, 1, 1, 1] = 1.0  # centroid (2.5, 2.5) -> rounds to (2, 2)
    assert select_mu(x, "centroid").tolist() == [[[0, 1], [2, 2]]]
    assert select_mu(x, "argmax").tolist() == [[[0, 0], [3, 3]]]


# ---------------------------------------------------------------------------------------------------- filter loss

def _slow_negative_mi(maps: list[list[list[float]]]) -> float:
    """-MI(X;T) of Eq. (1)-(2) for one filter, X = ``maps`` (each h x w), plain Python per template."""
    h, w = len(maps[0]), len(maps[0][0])
    tau = 0.5 / (h * w)
    alpha = h * w / (1 + h * w)
    templates = [([[_template_entry(i, j, (a, b), h, w) for j in range(w)] for i in range(h)], alpha / (h * w))
                 for a in range(h) for b in range(w)]
    templates.append(([[-tau] * w for _ in range(h)], 1 - alpha))
    likelihoods = []  # p(x|T) per template, per map
    for template, _ in templates:
        fit = [math.exp(sum(m[i][j] * template[i][j] for i in range(h) for j in range(w))) for m in maps]
        z = sum(fit)
        likelihoods.append([f / z for f in fit])
    p_x = [sum(prior * likelihoods[k][index] for k, (_, prior) in enumerate(templates)) for index in range(len(maps))]
    mi = sum(prior * sum(lik * math.log(lik / p_x[index]) for index, lik in enumerate(likelihoods[k]))
             for k, (_, prior) in enumerate(templates))
    return -mi


def test_exact_loss_equals_a_slow_per_template_reference():
    x = 40 * torch.rand(5, 2, 3, 4, generator=torch.Generator().manual_seed(3))
    loss = exact_filter_loss(x)
    assert loss.shape == (2,)
    for c in range(2):
        assert float(loss[c]) == pytest.approx(_slow_negative_mi(x[:, c].tolist()), rel=1e-4, abs=1e-7)
    assert float(loss.max()) < -1e-3  # the maps are informative: MI > 0


def _slow_eq4_grad(maps: list, positive: list[bool], log_z: list[float] | None, momentum: float):
    """Eq. (4) with the appendix's sign for one filter, plain Python: Z_T = running mean of exp(tr(x.T)) (the batch's
    mean if ``log_z`` is None), p(x) = sum_T p(T) exp(tr(x.T)) / Z_T; coefficients normalised to mean |.| = 1 per
    side, weighted 0.5 / density. Returns (grad per map, new log Z)."""
    h, w = len(maps[0]), len(maps[0][0])
    tau, prior = 0.5 / (h * w), 1 / (1 + h * w)  # p(T_mu) = alpha / n^2 = p(T-) = 1 / (1 + n^2)
    templates = [[[_template_entry(i, j, (a, b), h, w) for j in range(w)] for i in range(h)]
                 for a in range(h) for b in range(w)] + [[[-tau] * w for _ in range(h)]]
    scores = [[sum(m[i][j] * t[i][j] for i in range(h) for j in range(w)) for t in templates] for m in maps]
    batch_z = [sum(math.exp(s[k]) for s in scores) / len(maps) for k in range(len(templates))]
    z = batch_z if log_z is None else [(1 - momentum) * math.exp(old) + momentum * new
                                       for old, new in zip(log_z, batch_z, strict=True)]
    coefs, chosen = [], []
    for m, s, is_positive in zip(maps, scores, positive, strict=True):
        flat = max(range(h * w), key=lambda u: m[u // w][u % w])
        k = flat if is_positive else h * w
        p_x = sum(prior * math.exp(s[q]) / z[q] for q in range(len(templates)))
        coefs.append(prior * math.exp(s[k]) / z[k] * (s[k] - math.log(z[k]) - math.log(p_x)))
        chosen.append(templates[k])
    density = sum(positive) / len(positive)
    grads = []
    for coef, template, is_positive in zip(coefs, chosen, positive, strict=True):
        side = [abs(c) for c, p in zip(coefs, positive, strict=True) if p == is_positive]
        weight = 0.5 / density if is_positive else 0.5 / (1 - density)
        grads.append([[-weight * coef / (sum(side) / len(side)) * t for t in row] for row in template])
    return grads, [math.log(v) for v in z]


def test_approx_gradient_equals_a_slow_eq4_reference_over_two_batches():
    generator = torch.Generator().manual_seed(9)
    loss_f = FilterLoss(2, (3, 4), FilterLossConfig(weighting="none", momentum=0.5))
    positive = torch.tensor([[True, False], [True, True], [False, False], [False, True], [True, True]])
    log_z: list[list[float] | None] = [None, None]
    for _ in range(2):
        x = (8 * torch.rand(5, 2, 3, 4, generator=generator)).requires_grad_()
        _, loss = loss_f(x, positive)
        loss.backward()
        for c in range(2):
            expected, log_z[c] = _slow_eq4_grad(x[:, c].tolist(), positive[:, c].tolist(), log_z[c], 0.5)
            torch.testing.assert_close(x.grad[:, c], torch.tensor(expected), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(loss_f.log_z[c], torch.tensor(log_z[c]), rtol=1e-5, atol=1e-5)


def test_approx_and_exact_gradients_agree_on_strong_positive_maps():
    x, positive, _ = _peaked_maps(32, 32, 3, 7, amplitude=150.0)
    approx, exact = _approx_grad(x, positive)[:32], _exact_grad(x)[:32]
    cosine = F.cosine_similarity(approx.transpose(0, 1).flatten(1), exact.transpose(0, 1).flatten(1))
    assert cosine.min() > 0.95, cosine  # spec: 0.95-0.99 on 7x7 maps


def test_approx_descent_raises_the_chosen_template_and_lowers_negatives():
    x, positive, mu = _peaked_maps(32, 32, 3, 7, amplitude=150.0, seed=4)
    grad = _approx_grad(x, positive)
    peak = (mu[..., 0] * 7 + mu[..., 1])[..., None]
    far = positive_templates(7, 7)[peak[..., 0]] < -0.99 * 0.5 / 49  # units where T_mu_hat = -tau
    assert (grad[:32].flatten(2).gather(-1, peak) < 0).all()  # descent raises the peak ...
    assert (grad[:32][far] > 0).all()  # ... and lowers units where the template is negative
    assert (grad[32:] > 0).all()  # negatives (T-): descent lowers every activation


def test_log_space_keeps_huge_activations_finite():
    x, positive, _ = _peaked_maps(8, 8, 2, 7, amplitude=1e7)
    leaf = x.clone().requires_grad_()
    loss = exact_filter_loss(leaf).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    approx_leaf = x.clone().requires_grad_()
    _, approx_loss = FilterLoss(2, (7, 7))(approx_leaf, positive)  # default weighting, no task gradient
    approx_loss.backward()
    assert torch.isfinite(approx_loss) and torch.isfinite(approx_leaf.grad).all()
    grad = _approx_grad(x, positive)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_a_single_filter_trained_alone_with_the_loss_becomes_single_peaked():
    """Toy: part A (strong) and part B (weaker, >= 5 units away) in two input channels; the filter sees both."""
    n, count = 7, 32
    generator = torch.Generator().manual_seed(5)
    grid = unit_grid(n, n)
    index_a = torch.randint(0, n * n, (count,), generator=generator)
    far = (grid[:, None] - grid[None]).abs().sum(-1) >= 5
    index_b = torch.multinomial(far[index_a].float(), 1, generator=generator)[:, 0]
    parts = torch.stack([part_mask(grid[index_a], n, n), part_mask(grid[index_b], n, n)], dim=1)
    images = torch.cat([parts, torch.zeros(count, 2, n, n)]) + 0.02 * torch.rand(2 * count, 2, n, n,
                                                                                 generator=generator)
    positive = torch.cat([torch.ones(count, 1), torch.zeros(count, 1)]).bool()
    conv = torch.nn.Conv2d(2, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([150.0, 100.0]).reshape(1, 2, 1, 1))
        conv.bias.zero_()
    loss_f = FilterLoss(1, (n, n), FilterLossConfig(weighting="none"))
    optimizer = torch.optim.Adam(conv.parameters(), lr=2.0)

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            maps = torch.relu(conv(images))
        flat = maps[:count, 0].flatten(1)
        second = flat.gather(1, index_b[:, None]).mean() / flat.gather(1, index_a[:, None]).mean()
        return float(exact_filter_loss(maps)), float(second)

    loss_before, second_before = measure()
    for _ in range(60):
        _, loss = loss_f(torch.relu(conv(images)), positive)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss_after, second_after = measure()
    assert second_before > 0.6 and second_after < 0.1
    assert loss_after < loss_before - 0.5


def test_exact_method_backpropagates_the_exact_loss_gradient():
    x, positive, _ = _peaked_maps(6, 6, 2, 5, amplitude=50.0, seed=10)
    leaf = x.clone().requires_grad_()
    _, loss = FilterLoss(2, (5, 5), FilterLossConfig(method="exact", weighting="none"))(leaf, positive)
    loss.backward()
    assert loss.item() == pytest.approx(float(exact_filter_loss(x).sum()), rel=1e-6)
    torch.testing.assert_close(leaf.grad, _exact_grad(x), rtol=1e-5, atol=0.0)


def test_grad_ratio_scales_the_filter_gradient_to_the_task_gradient():
    x, positive, _ = _peaked_maps(6, 6, 2, 5, amplitude=50.0, seed=6)
    unit = _approx_grad(x, positive)
    task = torch.randn(12, 2, 5, 5, generator=torch.Generator().manual_seed(7))
    leaf = x.clone().requires_grad_()
    y, loss = FilterLoss(2, (5, 5), FilterLossConfig(grad_ratio=0.2))(leaf, positive)
    ((y * task).sum() + loss).backward()
    injected = leaf.grad - task
    torch.testing.assert_close(injected, unit * (0.2 * task.abs().mean() / unit.abs().mean()))


def test_grad_ratio_decays_with_the_epoch():
    x, positive, _ = _peaked_maps(6, 6, 2, 5, amplitude=50.0, seed=6)
    unit = _approx_grad(x, positive)
    task = torch.randn(12, 2, 5, 5, generator=torch.Generator().manual_seed(7))
    leaf = x.clone().requires_grad_()
    loss_f = FilterLoss(2, (5, 5), FilterLossConfig(grad_ratio=0.2, decay=True))
    loss_f.epoch = 4
    y, loss = loss_f(leaf, positive)
    ((y * task).sum() + loss).backward()
    torch.testing.assert_close(leaf.grad - task, unit * (0.2 / 4 * task.abs().mean() / unit.abs().mean()))


def test_lambda_weighting_is_eq3_lambda_and_decays_with_the_epoch():
    x, positive, _ = _peaked_maps(6, 6, 2, 5, amplitude=50.0, seed=8)
    unit = _approx_grad(x, positive)
    lam = 5e-6 * x.amax(dim=(2, 3)).mean(dim=0)  # per filter, first batch
    leaf = x.clone().requires_grad_()
    loss_f = FilterLoss(2, (5, 5), FilterLossConfig(weighting="lambda", decay=True))
    loss_f.epoch = 4
    _, loss = loss_f(leaf, positive)
    loss.backward()
    torch.testing.assert_close(leaf.grad, unit * lam[:, None, None] / 4, rtol=1e-5, atol=0.0)


def test_filter_categories_follow_the_class_that_activates_them_most():
    categories = FilterCategories(channels=3, num_categories=3, momentum=0.5)
    x = torch.zeros(4, 3, 2, 2)
    labels = torch.tensor([0, 1, 2, 2])
    x[0, 0] = 1.0  # filter 0 responds to class 0
    x[[2, 3], 1] = 2.0  # filter 1 to class 2
    x[1, 2] = 3.0  # filter 2 to class 1
    categories.update(x, labels)
    assert categories.assignment.tolist() == [0, 2, 1]
    assert categories.positive(labels)[:, 1].tolist() == [False, False, True, True]
    later = torch.zeros(2, 3, 2, 2)
    later[0, 0] = 10.0  # class 2 now drives filter 0: running mean 0.5 * 10 = 5 > 1
    categories.update(later, torch.tensor([2, 0]))
    assert categories.assignment.tolist() == [2, 2, 1]


# ---------------------------------------------------------------------------------------------------- nets

def test_make_interpretable_small_vgg_structure_geometry_and_shared_initialisation():
    torch.manual_seed(0)
    base = small_vgg(1)
    interpretable = make_interpretable(copy.deepcopy(base))
    ordinary = make_interpretable(copy.deepcopy(base), masks=False, loss=False)
    names = list(interpretable.features._modules)
    at = names.index("conv4_2")
    assert names[at : at + 9] == ["conv4_2", "bn4_2", "relu4_2", "mask4_2", "conv4_3", "bn4_3", "relu4_3",
                                  "mask4_3", "pool4"]
    assert list(ordinary.features._modules) == names and interpretable.top_conv == "conv4_3"
    assert interpretable.layer("conv4_3").weight.shape == (128, 128, 3, 3)
    assert list(interpretable_layers(interpretable)) == ["conv4_2", "conv4_3"]
    top, new = (layer_geometry(interpretable.features, name) for name in ("conv4_2", "conv4_3"))
    assert (new.stride, new.centre) == (top.stride, top.centre) and new.field == top.field + 2 * top.stride
    assert feature_size(interpretable.features, "mask4_3", 64) == (8, 8)
    state_a, state_b = interpretable.state_dict(), ordinary.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    other_seed = make_interpretable(copy.deepcopy(base), seed=1)
    assert not torch.equal(other_seed.layer("conv4_3").weight, interpretable.layer("conv4_3").weight)
    images = torch.rand(4, 3, 64, 64)
    interpretable.eval(), ordinary.eval()
    assert interpretable(images).shape == ordinary(images).shape == base.eval()(images).shape == (4, 1)
    layer = interpretable_layers(interpretable)["conv4_3"]
    assert layer.feature_map.shape == (4, 128, 8, 8) and layer.mu.shape == (4, 128, 2)
    assert not filter_loss(interpretable, positive=torch.ones(4, dtype=torch.bool)).requires_grad  # eval: value only
    assert (layer.feature_map >= 0).all() and layer.mask.shape == (4, 128, 8, 8)
    with pytest.raises(ValueError, match="already has interpretable layers"):
        make_interpretable(interpretable)


def _conv4_2_grad(net, images, negative, with_filter_loss: bool) -> torch.Tensor:
    net.train().zero_grad()
    logits = net(images)
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], (~negative).float())
    value = filter_loss(net, positive=~negative)
    (loss + value if with_filter_loss else loss).backward()
    assert torch.isfinite(value)
    return net.layer("conv4_2").weight.grad.clone()


def test_a_training_step_adds_the_filter_loss_gradient_only_when_the_loss_is_on():
    torch.manual_seed(1)
    net = make_interpretable(small_vgg(1))
    images, negative = torch.rand(8, 3, 64, 64), torch.tensor([False, True] * 4)
    state = copy.deepcopy(net.state_dict())
    task_only = _conv4_2_grad(net, images, negative, with_filter_loss=False)
    net.load_state_dict(state)
    both = _conv4_2_grad(net, images, negative, with_filter_loss=True)
    assert torch.isfinite(both).all() and not torch.allclose(both, task_only)
    relative = (both - task_only).norm() / task_only.norm()
    assert 1e-3 < relative < 1.0  # grad_ratio 0.1 at the maps: a visible, not dominant, change
    ordinary = make_interpretable(small_vgg(1), masks=False, loss=False)
    ordinary.load_state_dict(state)
    plain = _conv4_2_grad(ordinary, images, negative, with_filter_loss=False)
    with_value = _conv4_2_grad(ordinary, images, negative, with_filter_loss=True)
    assert torch.equal(plain, with_value)  # loss=False: the value carries no gradient
    set_loss_epoch(net, 3)
    assert all(layer.filter_loss.epoch == 3 for layer in interpretable_layers(net).values())


def test_multi_category_filters_take_their_category_from_labels():
    torch.manual_seed(2)
    net = make_interpretable(small_vgg(3, widths=(8, 8, 16, 16)))
    layer = interpretable_layers(net)["conv4_2"]
    assert layer.categories is not None and layer.categories.num_categories == 3
    images, labels = torch.rand(6, 3, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2])
    net.train()
    logits = net(images)
    value = filter_loss(net, labels=labels)
    (F.cross_entropy(logits, labels) + value).backward()
    sums = layer.feature_map.sum(dim=(2, 3))
    expected = torch.stack([sums[labels == c].mean(dim=0) for c in range(3)]).argmax(dim=0)
    assert torch.equal(layer.categories.assignment, expected)
    with pytest.raises(ValueError, match="exactly one"):
        filter_loss(net)


def test_make_interpretable_on_a_lower_layer_needs_a_free_name():
    net = small_vgg(1, widths=(8, 8, 16, 16))
    with pytest.raises(ValueError, match="already exist"):
        make_interpretable(copy.deepcopy(net), layer="conv4_1")  # conv4_2 is taken
    net = make_interpretable(net, layer="conv4_1", new_layer="conv4_1b")
    names = list(net.features._modules)
    at = names.index("relu4_1")
    assert names[at : at + 6] == ["relu4_1", "mask4_1", "conv4_1b", "bn4_1b", "relu4_1b", "mask4_1b"]
    assert names[at + 6] == "conv4_2" and net.top_conv == "conv4_2"
    assert net.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 1)


@pytest.mark.parametrize("build, top, new, block", [
    (vgg16, "conv5_3", "conv5_4", ["conv5_3", "relu5_3", "mask5_3", "conv5_4", "relu5_4", "mask5_4", "pool5"]),
    (alexnet, "conv5", "conv5_2", ["conv5", "relu5", "mask5", "conv5_2", "relu5_2", "mask5_2", "pool5"]),
])
def test_make_interpretable_torchvision_adapters(build, top, new, block):
    net = make_interpretable(build(2))  # weights=None: nothing is downloaded
    names = list(net.features._modules)
    assert names[names.index(top) : names.index(top) + len(block)] == block and net.top_conv == new
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in net.features)
    assert net.layer(new).in_channels == net.layer(new).out_channels == net.layer(top).out_channels
    old, added = layer_geometry(net.features, top), layer_geometry(net.features, new)
    assert (added.stride, added.centre) == (old.stride, old.centre)
    assert interpretable_layers(net)[new].filter_loss.map_size == feature_size(net.features, top, 224)

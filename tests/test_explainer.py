"""Tests of helpers.explainer (explainer network): attachment and initialisation from the performer, the norm-layer,
the online filter-loss weight, p against eta, learning without labels, the cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from helpers.data.arrays import PartArrays
from helpers.explainer import (
    DistillSettings,
    ExplainedPerformer,
    Explainer,
    FilterTap,
    NormLayer,
    PartMask,
    attachment,
    compare_layers,
    distill,
    distill_cached,
    fine_tune_with_labels,
    grad_cam_maps,
    part_contributions,
    performer_features,
)
from helpers.models.features import FeatureRecorder
from helpers.models.nets import alexnet, small_vgg

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def _performer(outputs: int = 1, seed: int = 0) -> nn.Module:
    """A tiny small_vgg (top conv conv4_2: 16 channels on 4 x 4) with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    net = small_vgg(outputs, SIZE, widths=(8, 8, 16, 16), convs_per_block=(1, 1, 1, 2), fc_dim=32)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        net.eval()
        if outputs == 1:  # centre the logit so that the performer predicts positives and negatives
            net.classifier.fc8.bias -= net(_arrays().float_images()).median()
    return net


def _arrays(n: int = 48, classes: int = 1, seed: int = 0) -> PartArrays:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (n,), generator=generator)
    return PartArrays(
        images=torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator),
        labels=labels, is_negative=torch.arange(n) % 2 == 1 if classes == 1 else torch.zeros(n, dtype=torch.bool),
        categories=["bird"] * n, classes=tuple(f"c{k}" for k in range(classes)), landmark_names=("head",),
        landmarks=torch.rand(n, 1, 2, generator=generator) * SIZE, landmark_counts=torch.ones(n, 1, dtype=torch.uint8),
        part_names=("head",), part_labels=torch.zeros(n, SIZE, SIZE, dtype=torch.uint8),
    )


def _settings(**changes) -> DistillSettings:
    return DistillSettings(**{"epochs": 2, "batch_size": 16, "filter_ratio": 0.1, **changes})


# ----------------------------------------------------------------------------------------------------------------
# Structure and initialisation

def test_attachment_by_layer_names():
    where = attachment(_performer())
    assert (where.input_layer, where.top_conv, where.top_relu, where.batch_norm) == ("relu4_1", "conv4_2", "relu4_2",
                                                                                     "bn4_2")
    assert where.pools == ("pool4",) and where.head == ("drop7", "fc8")
    alex = attachment(alexnet(3))  # no batch norm; dropout before fc6
    assert (alex.input_layer, alex.top_conv, alex.batch_norm, alex.pools, alex.head) == (
        "relu4", "conv5", None, ("pool5",), ("fc8",))
    with pytest.raises(ValueError, match="top conv"):
        attachment(_performer(), "conv4_1")


def test_shapes():
    net = _performer(outputs=3)
    model = ExplainedPerformer(net, Explainer.from_performer(net)).eval()
    images = torch.rand(5, 3, SIZE, SIZE)
    assert model(images).shape == (5, 3)
    assert model.interpretable_maps(images).shape == (5, 16, 4, 4)
    assert model.map_size == (4, 4)
    assert model.geometry.stride == 8  # two 3x3 zero-padded convs on relu4_1: the top conv's geometry
    encoding = model.explainer.encode(model.bottom(images))
    assert encoding.x_enc.shape == (5, 16, 2, 2) and encoding.p.item() == 0.5
    torch.testing.assert_close(encoding.x_enc, encoding.p * encoding.x_interp + (1 - encoding.p) * encoding.x_ordin)


def test_conv_interp_1_is_the_top_conv_with_batch_norm_folded():
    net = _performer()
    explainer = Explainer.from_performer(net)
    x = torch.randn(4, 16, 4, 4)
    expected = net.features.bn4_2(net.features.conv4_2(x))
    torch.testing.assert_close(explainer.conv_interp_1(x), expected, atol=1e-5, rtol=1e-5)
    assert explainer.conv_interp_1 is not net.features.conv4_2  # a copy: the performer stays untouched


def test_decoder_reproduces_fc6_and_fc7_at_initialisation():
    """fc-dec-1/2 are copies of fc6/fc7; after calibrate_decoder, they map the performer's pooled top conv map
    divided by its mean channel energy to exactly the performer's fc6 and fc7."""
    net = _performer(outputs=3)
    images = torch.rand(6, 3, SIZE, SIZE)
    with FeatureRecorder(net, ["pool4", "fc6", "fc7", "relu7"]) as recorder:
        net(images)
    pooled, outputs = recorder.outputs["pool4"], recorder.outputs
    explainer = Explainer.from_performer(net)
    fc6, fc7 = explainer.decode(pooled)
    torch.testing.assert_close(fc6, outputs["fc6"])
    torch.testing.assert_close(fc7, outputs["fc7"])
    energy = pooled.sum(dim=(2, 3)).mean(dim=0) + 0.5  # any positive scale (+0.5: a random net has dead channels)
    explainer.calibrate_decoder(energy)
    fc6, fc7 = explainer.decode(pooled / energy[:, None, None])
    torch.testing.assert_close(fc6, outputs["fc6"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.relu(fc7), outputs["relu7"], atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Norm-layer and filter-loss weight

def test_norm_layer_running_alpha_by_hand():
    norm = NormLayer(2, momentum=0.5)
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 4.0]]],
                      [[[9.0, 9.0], [9.0, 9.0]], [[9.0, 9.0], [9.0, 9.0]]],  # a negative image: not counted
                      [[[2.0, 2.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    positive = torch.tensor([True, False, True])
    out = norm.train()(x, positive)
    batch_alpha = torch.tensor([(4.0 + 5.0) / 2, (4.0 + 4.0) / 2])  # E over positives of sum_ij max(x, 0)
    torch.testing.assert_close(norm.alpha, batch_alpha)  # the first batch sets the running alpha
    torch.testing.assert_close(out, x / batch_alpha[:, None, None])
    norm(2 * x, positive)
    torch.testing.assert_close(norm.alpha, 0.5 * batch_alpha + 0.5 * 2 * batch_alpha)
    torch.testing.assert_close(norm.eval()(x), x / norm.alpha[:, None, None])
    assert int(norm.num_batches) == 2


def test_norm_layer_is_scale_invariant_in_training_like_batch_norm():
    """In training the batch estimate of alpha is differentiated: scaling a channel changes neither output nor
    gradient direction, so the gradient cannot push a channel's scale up for nothing."""
    norm = NormLayer(3).train()
    x = torch.rand(4, 3, 2, 2, requires_grad=True)
    (norm(x) * torch.arange(12.0).view(1, 3, 2, 2)).sum().backward()
    torch.testing.assert_close(norm(5 * x.detach()), norm(x.detach()))
    assert ((x.grad * x).sum(dim=(0, 2, 3)).abs() < 1e-4).all()  # no component along the channel's own scale


def test_norm_layer_floors_rare_channels():
    norm = NormLayer(2, floor=0.01).train()
    x = torch.zeros(4, 2, 2, 2)
    x[:, 0] = 1.0  # alpha_0 = 4
    x[0, 1, 0, 0] = 1e-6  # alpha_1 = 2.5e-7 would amplify this unit to 4; the floor is 0.01 * mean alpha
    floor = 0.01 * (4.0 + 2.5e-7) / 2
    torch.testing.assert_close(norm(x)[0, 1, 0, 0], torch.tensor(1e-6 / floor))


def test_filter_tap_weight_is_the_online_lambda_f():
    """lambda_f = ratio / N * E||dLoss_rec/dx_f|| / E||dLoss_f/dx_f|| (appendix): the filter-loss gradient reaching
    x is ratio / N times the reconstruction gradient, per filter, in mean norm."""
    torch.manual_seed(0)
    tap = FilterTap(4, (5, 5), ratio=0.2).train()
    x = (torch.rand(16, 4, 5, 5) * 3).requires_grad_()
    rec_grad = torch.randn(16, 4, 5, 5) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None, None]
    positive = torch.arange(16) % 2 == 0

    def step() -> torch.Tensor:
        x.grad = None
        main = tap.watch(x)
        tap.tap(x)
        ((main * rec_grad).sum() + tap.loss(positive=positive)).backward()
        return (x.grad - rec_grad).flatten(2).norm(dim=-1).mean(dim=0)

    assert (step() == 0).all()  # lambda_f = 0 before any gradient statistics exist
    torch.testing.assert_close(step(), 0.2 * rec_grad.flatten(2).norm(dim=-1).mean(dim=0), rtol=0.1, atol=0)
    tap.epoch = 2
    torch.testing.assert_close(step(), 0.1 * rec_grad.flatten(2).norm(dim=-1).mean(dim=0), rtol=0.1, atol=0)


def test_interpretable_filter_loss_sends_no_gradient_into_the_ordinary_track():
    net = _performer()
    explainer = Explainer.from_performer(net, filter_ratio=1.0).train()
    x = torch.relu(torch.randn(8, 16, 4, 4))
    positive = torch.arange(8) % 2 == 0
    for with_reconstruction in (True, False):  # the first pass records the statistics lambda_f needs
        explainer.zero_grad()
        encoding = explainer.encode(x, positive)
        loss = explainer.filter_loss(positive=positive)
        if with_reconstruction:
            loss = loss + explainer.decode(encoding.x_enc)[1].pow(2).sum()
        loss.backward()
    assert explainer.conv_ordin.weight.grad is None or not explainer.conv_ordin.weight.grad.any()
    assert explainer.conv_interp_2.weight.grad.abs().sum() > 0 and explainer.w_p.grad != 0


# ----------------------------------------------------------------------------------------------------------------
# Learning (Eq. 1)

def test_reconstruction_loss_decreases():
    run = distill(_performer(), _arrays(), _settings(epochs=4, eta=0.0), device="cpu")
    losses = run.history["task_loss"]
    assert losses[-1] < losses[0] and run.history["fc7_error"][-1] < run.history["fc7_error"][0]


def test_larger_eta_gives_larger_p():
    net, arrays = _performer(), _arrays()
    p = [distill(net, arrays, _settings(eta=eta, lr_p=0.5), device="cpu").p for eta in (0.0, 1.0, 100.0)]
    assert p[0] < p[1] < p[2] and p[2] > 0.7


class _NoLabels(PartArrays):
    """PartArrays whose annotations cannot be read (only the images can)."""

    def __getattribute__(self, name: str):
        if name in ("labels", "is_negative", "categories", "landmarks", "landmark_counts", "part_labels"):
            raise AssertionError(f"the distillation read {name!r}")
        return super().__getattribute__(name)


@pytest.mark.parametrize("outputs", [1, 3])
def test_distillation_reads_no_labels(outputs):
    net, arrays = _performer(outputs), _arrays(classes=outputs)
    hidden = _NoLabels(**{f.name: getattr(arrays, f.name) for f in dataclasses.fields(arrays)})
    poisoned = dataclasses.replace(arrays, labels=arrays.labels.flip(0), is_negative=~arrays.is_negative)
    states = [distill(net, data, _settings(epochs=1), device="cpu").explainer.state_dict()
              for data in (arrays, hidden, poisoned)]
    for state in states[1:]:
        for key, value in states[0].items():
            torch.testing.assert_close(state[key], value, atol=0, rtol=0)


def test_positives_come_from_the_performer_prediction():
    net = _performer()
    features = performer_features(net, _arrays().images, flip=False, device="cpu")
    positive = features.logits[0, :, 0] > 0
    assert positive.any() and not positive.all()
    torch.testing.assert_close(features.norm_images(), positive)


def test_explainer_cls_uses_labels_and_leaves_the_performer_alone():
    net, arrays = _performer(outputs=3), _arrays(classes=3)
    fc8 = net.classifier.fc8.weight.clone()
    run = distill(net, arrays, _settings(epochs=1), device="cpu")
    tuned = fine_tune_with_labels(run, net, arrays, _settings(epochs=2))
    assert not torch.equal(tuned.model.head.fc8.weight, fc8)
    torch.testing.assert_close(net.classifier.fc8.weight, fc8, atol=0, rtol=0)
    assert tuned.explainer is not run.explainer and "task_loss" in tuned.history


def test_cache_round_trip():
    net, arrays = _performer(), _arrays(n=16)
    first = distill_cached(net, arrays, _settings(epochs=1), device="cpu", name="test-explainer")
    second = distill_cached(net, arrays, _settings(epochs=1), device="cpu", name="test-explainer")
    assert not first.from_cache and second.from_cache and second.history == first.history
    for key, value in first.explainer.state_dict().items():
        torch.testing.assert_close(second.explainer.state_dict()[key], value, atol=0, rtol=0)


def test_mask_layer_and_its_ablation():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 3], x[0, 0, 7, 7] = 2.0, 1.0  # a peak and a far-away activation
    masked = PartMask("argmax")(x)
    assert masked[0, 0, 2, 3] == 2.0 and masked[0, 0, 7, 7] == 0  # the mask keeps the region around the peak
    torch.testing.assert_close(PartMask(enabled=False)(x), x)
    net = _performer()
    plain = Explainer.from_performer(net, masks=False).eval()
    x = torch.relu(torch.randn(3, 16, 4, 4))
    torch.testing.assert_close(plain.interpretable_maps(x),
                               torch.relu(plain.conv_interp_2(torch.relu(plain.conv_interp_1(x)))))


# ----------------------------------------------------------------------------------------------------------------
# Analysis (Tables 1/5, Fig. 5)

def test_compare_layers_uses_the_paper_protocols():
    for outputs in (1, 3):
        net, arrays = _performer(outputs), _arrays(n=24, classes=outputs)
        model = ExplainedPerformer(net, Explainer.from_performer(net))
        comparison = compare_layers(net, model, arrays, ["head"], device="cpu")
        assert set(comparison.results) == {"input layer", "top conv", "explainer"}
        assert comparison.protocol == ("single" if outputs == 1 else "assigned_category")
        assert all(0 < value < 1 for value in comparison.values().values())


def test_part_contributions_partition_the_filters():
    net, arrays = _performer(), _arrays(n=16)
    arrays.part_labels[:, :16] = 1  # the top half of every image is the head
    model = ExplainedPerformer(net, Explainer.from_performer(net))
    result = part_contributions(model, arrays, device="cpu")
    assert result.parts[-1] == "other" and "head" in result.parts
    assert sum(result.filters.values()) == 16 and len(result.assignment) == 16
    assert sum(result.contribution.values()) == pytest.approx(1.0)


def test_grad_cam_maps_of_the_explainer():
    net = _performer(outputs=3)
    model = ExplainedPerformer(net, Explainer.from_performer(net))
    cams = grad_cam_maps(model, model.explainer.mask_2, torch.rand(2, 3, SIZE, SIZE), [0, 2], device="cpu")
    assert cams.shape == (2, SIZE, SIZE) and cams.min() >= 0 and cams.max() <= 1

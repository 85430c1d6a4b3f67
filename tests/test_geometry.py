import pytest
import torch
from torch import nn

from helpers.models.geometry import feature_size, layer_geometry
from helpers.models.nets import alexnet, small_vgg, vgg16


@pytest.fixture(scope="module")
def vgg():
    return vgg16(num_outputs=2)


@pytest.mark.parametrize(
    "layer, stride, centre",
    [("conv3_1", 4, 1.5), ("conv3_3", 4, 1.5), ("conv4_2", 8, 3.5), ("conv4_3", 8, 3.5), ("conv5_2", 16, 7.5),
     ("conv5_3", 16, 7.5), ("relu5_3", 16, 7.5), ("pool5", 32, 15.5)],
)
def test_vgg16_known_answer(vgg, layer, stride, centre):
    geometry = layer_geometry(vgg.features, layer)
    assert geometry.stride == stride and geometry.centre == centre


def test_vgg16_receptive_field_and_sizes(vgg):
    # (k - 1) * s summed: convs 2*(2*1 + 2*2 + 3*4 + 3*8 + 3*16) = 180, pools 1 + 2 + 4 + 8 = 15, plus 1 -> 196 px,
    # the well-known VGG-16 conv5_3 receptive field (pool5: 196 + 16 = 212).
    assert layer_geometry(vgg.features, "conv5_3").field == 196
    assert layer_geometry(vgg.features, "pool5").field == 212
    assert feature_size(vgg.features, "conv5_3", 224) == (14, 14)
    assert feature_size(vgg.features, "pool5", 224) == (7, 7)


def test_alexnet_geometry():
    net = alexnet(num_outputs=2)
    # conv1 (k11 s4 p2): centre (11-1)/2 - 2 = 3; pool1 (k3 s2): 3 + 1*4 = 7; conv2 (k5 p2): 7; pool2: 7 + 8 = 15.
    assert layer_geometry(net.features, "conv1").centre == 3 and layer_geometry(net.features, "conv1").stride == 4
    assert layer_geometry(net.features, "pool2").centre == 15 and layer_geometry(net.features, "pool2").stride == 16
    assert feature_size(net.features, "conv5", 224) == (13, 13)
    assert feature_size(net.features, "conv5", 224) == tuple(net.features[:11](torch.zeros(1, 3, 224, 224)).shape[-2:])


def test_small_vgg_geometry_and_sizes():
    net = small_vgg(1, input_size=64)
    g = layer_geometry(net.features, "conv3_2")
    assert (g.stride, g.centre) == (4, 1.5)
    g = layer_geometry(net.features, "conv4_2")
    assert (g.stride, g.centre) == (8, 3.5)
    assert feature_size(net.features, "conv4_2", 64) == (8, 8)
    with torch.no_grad():
        upto_relu4_2 = net.features[: list(net.features._modules).index("relu4_2") + 1]
        assert upto_relu4_2(torch.zeros(1, 3, 64, 64)).shape[-1] == 8


def test_grid_positions():
    net = small_vgg(1, input_size=64)
    grid = layer_geometry(net.features, "conv4_2").grid(8, 8)
    assert grid.shape == (64, 2)
    assert grid[0].tolist() == [3.5, 3.5] and grid[9].tolist() == [11.5, 11.5] and grid[-1].tolist() == [59.5, 59.5]


@pytest.mark.parametrize("layer, unit", [("conv3_2", (8, 5)), ("conv4_1", (4, 3))])
def test_empirical_gradient_peaks_at_the_centre(layer, unit):
    """The input gradient of one unit, averaged over random inputs, is centred on c + s * index."""
    torch.manual_seed(0)
    net = small_vgg(1, input_size=64).eval()
    stack = net.features[: list(net.features._modules).index(layer) + 1]
    total = torch.zeros(64, 64)
    for _ in range(24):
        x = torch.rand(1, 3, 64, 64, requires_grad=True)
        stack(x)[0, :, unit[0], unit[1]].sum().backward()
        total += x.grad[0].abs().sum(0)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centroid = ((total * ys).sum() / total.sum(), (total * xs).sum() / total.sum())
    geometry = layer_geometry(net.features, layer)
    assert abs(float(centroid[0]) - geometry.to_image(unit[0])) < 1.0
    assert abs(float(centroid[1]) - geometry.to_image(unit[1])) < 1.0
    support = total.nonzero()
    half = (geometry.field - 1) / 2
    assert support[:, 0].min() >= geometry.to_image(unit[0]) - half
    assert support[:, 0].max() <= geometry.to_image(unit[0]) + half


def test_unsupported_layers_fail_clearly():
    stack = nn.Sequential()
    stack.add_module("conv", nn.Conv2d(3, 4, 3))
    stack.add_module("gap", nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match="no fixed geometry"):
        layer_geometry(stack, "gap")
    with pytest.raises(KeyError, match="no layer 'conv9'"):
        layer_geometry(stack, "conv9")

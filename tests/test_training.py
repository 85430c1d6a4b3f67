import pytest
import torch

from helpers.data.arrays import materialize
from helpers.data.synthetic import multi_category, single_category
from helpers.models.features import FeatureRecorder, collect_features
from helpers.models.nets import build_performer, load_pretrained, small_vgg
from helpers.models.training import TrainSettings, accuracy, classification_loss, train, train_cached


@pytest.fixture(scope="module")
def tiny_single():
    return materialize(single_category("cat", "train", 24, 24, 32, seed=0), workers=1)


def _net(outputs: int = 1):
    return small_vgg(outputs, input_size=32, widths=(4, 8), convs_per_block=(1, 1), fc_dim=16)


def test_training_lowers_the_loss_and_is_deterministic(tiny_single):
    settings = TrainSettings(epochs=8, batch_size=16, lr=1e-2, seed=3)
    torch.manual_seed(0)
    net_a = _net()
    torch.manual_seed(0)
    net_b = _net()
    history_a = train(net_a, tiny_single, settings, device="cpu")
    history_b = train(net_b, tiny_single, settings, device="cpu")
    assert history_a["loss"][-1] < history_a["loss"][0]
    assert history_a == history_b
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_losses_by_hand():
    logits = torch.tensor([[2.0], [-1.0]])
    negative = torch.tensor([False, True])
    # logistic: -log(sigmoid(2)) and -log(1 - sigmoid(-1)) = -log(sigmoid(1)), averaged
    expected = (-torch.log(torch.sigmoid(torch.tensor(2.0))) - torch.log(torch.sigmoid(torch.tensor(1.0)))) / 2
    assert torch.isclose(classification_loss(logits, torch.zeros(2, dtype=torch.long), negative, "logistic"), expected)
    multi = torch.tensor([[1.0, 0.0, 0.0]])
    label = torch.tensor([0])
    soft = -torch.log(torch.exp(torch.tensor(1.0)) / (torch.exp(torch.tensor(1.0)) + 2))
    assert torch.isclose(classification_loss(multi, label, torch.tensor([False]), "softmax"), soft)
    one_vs_all = (-torch.log(torch.sigmoid(torch.tensor(1.0))) - 2 * torch.log(torch.tensor(0.5))) / 3
    assert torch.isclose(classification_loss(multi, label, torch.tensor([False]), "logistic"), one_vs_all)


def test_single_output_net_needs_negatives():
    positives_only = materialize(multi_category(("cat",), "train", 4, 32, seed=0), workers=1)
    with pytest.raises(ValueError, match="needs negatives"):
        train(_net(), positives_only, TrainSettings(epochs=1), device="cpu")


def test_cache_round_trip_and_corrupt_checkpoint(tiny_single, tmp_path, monkeypatch):
    monkeypatch.setenv("HELPERS_DATA_DIR", str(tmp_path))
    settings = TrainSettings(epochs=2, batch_size=16, seed=1)
    first = train_cached(_net, {"arch": "tiny"}, tiny_single, {"data": "tiny"}, settings, device="cpu", name="t")
    assert not first.from_cache
    (path,) = (tmp_path / "cache" / "performers").glob("t-*.pt")
    second = train_cached(_net, {"arch": "tiny"}, tiny_single, {"data": "tiny"}, settings, device="cpu", name="t")
    assert second.from_cache and second.history == first.history
    for p, q in zip(first.net.state_dict().values(), second.net.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    other = train_cached(_net, {"arch": "tiny"}, tiny_single, {"data": "other"}, settings, device="cpu", name="t")
    assert not other.from_cache, "a different data key must not hit the cache"
    path.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        third = train_cached(_net, {"arch": "tiny"}, tiny_single, {"data": "tiny"}, settings, device="cpu", name="t")
    assert not third.from_cache and third.history == first.history
    assert torch.load(path, weights_only=True)["history"] == first.history


def test_accuracy_counts_correct_predictions(tiny_single):
    net = _net()
    with torch.no_grad():
        net.classifier.fc8.weight.zero_()
        net.classifier.fc8.bias.fill_(5.0)  # always "object"
    assert accuracy(net, tiny_single, device="cpu") == pytest.approx(0.5)


def test_feature_recorder_reads_named_layers(tiny_single):
    net = _net().eval()
    images = tiny_single.float_images(slice(0, 5))
    with FeatureRecorder(net, ["conv2_1", "relu2_1"]) as recorder:
        net(images)
    assert recorder.outputs["relu2_1"].shape == (5, 8, 16, 16)
    assert torch.equal(recorder.outputs["relu2_1"], torch.relu(net.features.bn2_1(recorder.outputs["conv2_1"])))
    streamed = collect_features(net, tiny_single.images[:5], ["relu2_1"], batch_size=2, device="cpu")
    assert torch.allclose(streamed["relu2_1"], recorder.outputs["relu2_1"], atol=1e-6)


def test_named_layers_and_errors():
    net = small_vgg(3)
    assert net.top_conv == "conv4_2" and net.relu_of("conv4_2") == "relu4_2" and net.conv_below("conv4_2") == "conv4_1"
    assert net.num_outputs == 3
    with pytest.raises(KeyError, match="conv layers: conv1_1"):
        net.relu_of("fc6")
    with pytest.raises(ValueError, match="allowed values: 'small_vgg', 'vgg16', 'alexnet'"):
        build_performer("resnet", 2)
    with pytest.raises(ValueError, match="divisible by 16"):
        small_vgg(2, input_size=60)


def test_pretrained_weights_only_from_a_local_file(tmp_path):
    from torchvision.models import alexnet as tv_alexnet

    with pytest.raises(FileNotFoundError, match="nothing is fetched at run time"):
        build_performer("alexnet", 2, 224, weights_path=tmp_path / "missing.pth")
    source = tv_alexnet(weights=None)
    torch.save(source.state_dict(), tmp_path / "alexnet.pth")
    net = build_performer("alexnet", 2, 224, weights_path=tmp_path / "alexnet.pth")
    assert torch.equal(net.layer("conv1").weight, source.features[0].weight)
    assert torch.equal(net.layer("fc7").weight, source.classifier[4].weight)
    assert net.num_outputs == 2
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(tv_alexnet(weights=None), tmp_path / "bad.pth")


def test_extra_loss_is_added_and_recorded(tiny_single):
    calls = []

    def l2_on_fc8(net, labels, negative, epoch):
        calls.append((len(labels), epoch))
        return 10.0 * net.classifier.fc8.weight.pow(2).sum()

    settings = TrainSettings(epochs=2, batch_size=16, seed=0)
    torch.manual_seed(0)
    plain_net = _net()
    torch.manual_seed(0)
    penalised_net = _net()
    plain = train(plain_net, tiny_single, settings, device="cpu")
    penalised = train(penalised_net, tiny_single, settings, device="cpu", extra_loss=l2_on_fc8)
    assert [epoch for _, epoch in calls] == [0, 0, 0, 1, 1, 1] and sum(n for n, _ in calls[:3]) == 48
    assert len(penalised["extra_loss"]) == 2 and "extra_loss" not in plain
    assert penalised_net.classifier.fc8.weight.norm() < plain_net.classifier.fc8.weight.norm()
    assert penalised["loss"][0] > plain["loss"][0]

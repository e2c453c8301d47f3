"""Model zoo: exact parameter counts, architecture details, forward shapes, initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import prune

from lightning_prunelimit.models import (
    MLP,
    VGG,
    AlexNet,
    ResNet,
    SmallCNN,
    alexnet,
    count_prunable_weights,
    fc5,
    fc12,
    init_weights,
    make_activation,
    resnet18,
    resnet50,
    small_mlp,
    vgg16_bn,
)


def _bias_count(model: nn.Module) -> int:
    return sum(
        m.bias.numel()
        for m in model.modules()
        if isinstance(m, (nn.Linear, _ConvNd)) and m.bias is not None
    )


def _norm_count(model: nn.Module) -> int:
    return sum(
        p.numel() for m in model.modules() if isinstance(m, _BatchNorm) for p in m.parameters()
    )


# (factory, kwargs, prunable weights, biases, BN parameters): the paper's table (paper.md 4.3).
PAPER_COUNTS = [
    (fc5, {"in_features": 3072, "num_classes": 10}, 3_883_000, 2_010, 0),
    (fc12, {"in_features": 3072, "num_classes": 10}, 7_263_000, 6_610, 0),
    (alexnet, {"num_classes": 10}, 46_778_400, 9_578, 0),
    (vgg16_bn, {"num_classes": 10}, 14_715_584, 4_234, 8_448),
    (resnet18, {"num_classes": 100}, 11_210_432, 100, 9_600),
    (resnet50, {"num_classes": 100}, 23_652_032, 100, 53_120),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "weights", "biases", "norm"),
    PAPER_COUNTS,
    ids=[row[0].__name__ for row in PAPER_COUNTS],
)
def test_paper_models_have_the_papers_parameter_counts(factory, kwargs, weights, biases, norm):
    # Built on the meta device: exact shapes without allocating the big weight tensors.
    with torch.device("meta"):
        model = factory(**kwargs)
    assert count_prunable_weights(model) == weights
    assert _bias_count(model) == biases
    assert _norm_count(model) == norm
    assert sum(p.numel() for p in model.parameters()) == weights + biases + norm


def test_prunable_count_matches_a_hand_count_of_layer_shapes():
    net = nn.Sequential(
        nn.Conv2d(3, 5, 3),
        nn.BatchNorm2d(5),
        nn.Conv1d(5, 2, 4, bias=False),
        nn.ConvTranspose2d(2, 3, 2),
        nn.Linear(7, 4),
        nn.LayerNorm(4),
    )
    assert count_prunable_weights(net) == 3 * 5 * 9 + 5 * 2 * 4 + 2 * 3 * 4 + 7 * 4
    assert count_prunable_weights(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3))) == 0


def test_prunable_count_is_unchanged_by_torch_pruning():
    torch.manual_seed(0)
    net = fc5(in_features=64)
    before = count_prunable_weights(net)
    assert before == 64 * 1000 + 1000 * 600 + 600 * 300 + 300 * 100 + 100 * 10
    prune.l1_unstructured(net.layers[1], "weight", amount=0.5)
    assert count_prunable_weights(net) == before


def test_count_prunable_weights_rejects_non_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        count_prunable_weights([torch.zeros(3)])


def test_mlp_layer_widths_and_input_size_are_configurable():
    net = fc5(in_features=784, num_classes=7)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 1000),
        (1000, 600),
        (600, 300),
        (300, 100),
        (100, 7),
    ]
    widths = [m.out_features for m in fc12(in_features=784).modules() if isinstance(m, nn.Linear)]
    assert widths == [1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100, 10]
    assert count_prunable_weights(small_mlp()) == 40 * 100 + 100 * 100 + 100 * 10


def test_mlp_flattens_its_input_and_checks_the_feature_count():
    torch.manual_seed(0)
    net = MLP(in_features=12, hidden=[5], num_classes=3, activation="tanh")
    x = torch.randn(4, 3, 2, 2)
    expected = net.layers[3](torch.tanh(net.layers[1](x.reshape(4, 12))))
    torch.testing.assert_close(net(x), expected)
    with pytest.raises(ValueError, match="expects 12 features per sample.*got input of shape"):
        net(torch.zeros(4, 13))
    with pytest.raises(ValueError, match="leading batch dimension"):
        net(torch.zeros(12))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_features": 0, "hidden": [3], "num_classes": 2}, "in_features must be a positive"),
        ({"in_features": 4, "hidden": [3, -1], "num_classes": 2}, "every hidden width"),
        ({"in_features": 4, "hidden": [3], "num_classes": 0}, "num_classes must be a positive"),
        ({"in_features": 4, "hidden": [3], "num_classes": 2, "activation": "relu6"}, "relu6"),
    ],
)
def test_mlp_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs)


def test_activation_names_give_the_right_functions():
    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(make_activation("relu")(x), x.clamp(min=0))
    torch.testing.assert_close(make_activation("tanh")(x), torch.tanh(x))
    torch.testing.assert_close(make_activation("sigmoid")(x), torch.sigmoid(x))
    torch.testing.assert_close(make_activation("leaky_relu")(x), torch.where(x > 0, x, 0.01 * x))
    torch.testing.assert_close(make_activation("gelu")(x), nn.functional.gelu(x))


def test_alexnet_layers_and_upsampling():
    with torch.device("meta"):
        net = alexnet(num_classes=10)
        out = net(torch.zeros(2, 3, 32, 32))
        assert out.shape == (2, 10)
        with pytest.raises(ValueError, match=r"gives a \(256, 2, 2\) feature map"):
            net(torch.zeros(2, 3, 16, 16))
        assert AlexNet(num_classes=4, upsample=1)(torch.zeros(1, 3, 224, 224)).shape == (1, 4)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (96, (11, 11), (4, 4), (1, 1)),
        (256, (5, 5), (1, 1), (2, 2)),
        (384, (3, 3), (1, 1), (1, 1)),
        (384, (3, 3), (1, 1), (1, 1)),
        (256, (3, 3), (1, 1), (1, 1)),
    ]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (6400, 4096),
        (4096, 4096),
        (4096, 10),
    ]
    assert not any(isinstance(m, (nn.Dropout, _BatchNorm)) for m in net.modules())


class _Stop(Exception):
    pass


def test_alexnet_upsampling_is_nearest_neighbour_by_seven():
    # The layers live on the meta device; a pre-hook captures what the first conv would see
    # (computed on the CPU by the upsampling) and stops the forward pass there.
    with torch.device("meta"):
        net = AlexNet(num_classes=3)
    seen = {}

    def capture(module, args):
        seen["x"] = args[0]
        raise _Stop

    net.features.register_forward_pre_hook(capture)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(_Stop):
        net(x)
    expected = x.repeat_interleave(7, dim=2).repeat_interleave(7, dim=3)
    assert seen["x"].shape == (2, 3, 224, 224)
    assert torch.equal(seen["x"], expected)


def test_vgg16_bn_structure_and_forward():
    torch.manual_seed(0)
    net = vgg16_bn(num_classes=10)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    layers = list(net.features)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2], nn.ReLU)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.features) == 5
    assert (net.classifier.in_features, net.classifier.out_features) == (512, 10)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_vgg_rejects_bad_layouts():
    with pytest.raises(ValueError, match="positive channel counts or 'M'"):
        VGG([64, "A"])
    with pytest.raises(ValueError, match="no convolution"):
        VGG(["M"])
    assert isinstance(VGG([3], in_channels=3).features[0], nn.Conv2d)


def test_resnet_structure_and_forward():
    torch.manual_seed(0)
    net = resnet18(num_classes=100)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    projections = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(projections) == 3  # stages 2-4 change resolution and width
    assert [len(stage) for stage in (net.layer1, net.layer2, net.layer3, net.layer4)] == [2] * 4
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100) and torch.isfinite(out).all()


def test_resnet50_has_bottlenecks_and_four_projection_shortcuts():
    with torch.device("meta"):
        net = resnet50(num_classes=100)
    assert [len(s) for s in (net.layer1, net.layer2, net.layer3, net.layer4)] == [3, 4, 6, 3]
    shortcuts = [m for m in net.modules() if isinstance(m, nn.Sequential) and len(m) == 2]
    assert len(shortcuts) == 4
    assert net.fc.in_features == 2048
    assert net.layer2[0].conv2.stride == (2, 2)


def test_resnet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="'basic' or 'bottleneck'"):
        ResNet("wide", [2, 2, 2, 2])
    with pytest.raises(ValueError, match="four positive integers"):
        ResNet("basic", [2, 2, 2])


def test_small_models_forward_shapes_and_channels():
    torch.manual_seed(0)
    cnn = SmallCNN(in_channels=1, num_classes=10).eval()
    with torch.no_grad():
        assert cnn(torch.randn(3, 1, 8, 8)).shape == (3, 10)
        assert cnn(torch.randn(3, 1, 28, 28)).shape == (3, 10)
        tiny = SmallCNN(in_channels=3, num_classes=4, channels=[4])
        assert tiny(torch.randn(2, 3, 6, 6)).shape == (2, 4)
        assert small_mlp()(torch.randn(5, 40)).shape == (5, 10)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == 2
    with pytest.raises(ValueError, match="channels must be a non-empty list"):
        SmallCNN(channels=[])


def test_init_weights_follows_the_paper():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 64, 5), nn.BatchNorm2d(64), nn.Flatten(), nn.Linear(2000, 300))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(3, 4)
        net[1].running_mean.fill_(5.0)
    assert init_weights(net) is net
    conv, bn, linear = net[0], net[1], net[3]
    # Kaiming normal, fan_in, ReLU gain: std = sqrt(2 / fan_in); the sample std of 12,800 and
    # 600,000 draws is within 3% and 0.5% of it with overwhelming probability.
    assert math.isclose(conv.weight.std().item(), math.sqrt(2 / (8 * 25)), rel_tol=0.03)
    assert math.isclose(linear.weight.std().item(), math.sqrt(2 / 2000), rel_tol=0.005)
    assert abs(linear.weight.mean().item()) < 0.001
    assert torch.equal(conv.bias, torch.zeros(64)) and torch.equal(linear.bias, torch.zeros(300))
    assert torch.equal(bn.weight, torch.ones(64)) and torch.equal(bn.bias, torch.zeros(64))
    assert torch.equal(bn.running_mean, torch.zeros(64))


def test_init_is_reproducible_with_the_global_seed():
    torch.manual_seed(123)
    first = SmallCNN()
    torch.manual_seed(123)
    second = SmallCNN()
    torch.manual_seed(124)
    third = SmallCNN()
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(first.features[0].weight, third.features[0].weight)


def test_init_weights_rejects_non_modules():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        init_weights(torch.zeros(3))

"""Winograd F(4x4, 3x3) convolutions of the resident OpenVINO encoder's stage 1 (issue 15)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ovsam_core.runtime.openvino_encoder import openvino_available
from ovsam_core.runtime.winograd import CHANNELS, WinogradConv3x3, winograd_layers, winograd_rewrite


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("cin,cout,h,w", [(8, 8, 16, 16), (24, 40, 12, 20), (256, 192, 8, 32)])
def test_winograd_equals_the_direct_convolution(m, cin, cout, h, w):
    torch.manual_seed(0)
    x = torch.randn(1, cin, h, w)
    weight, bias = torch.randn(cout, cin, 3, 3) / (3 * cin ** 0.5), torch.randn(cout)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    with torch.no_grad():
        y = WinogradConv3x3(weight, bias, m=m)(x)
        direct = F.conv2d(x, weight, bias, padding=1)
    assert y.shape == ref.shape
    assert _rel(y, ref) < 1e-5 and _rel(direct, ref) < 1e-5
    with torch.no_grad():  # no bias
        assert _rel(WinogradConv3x3(weight, None, m=m)(x), F.conv2d(x.double(), weight.double(), padding=1)) < 1e-5


def test_sizes_that_do_not_tile_run_the_direct_convolution():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 10, 13)  # 13 is not a multiple of the 4x4 tile
    weight, bias = torch.randn(8, 8, 3, 3), torch.randn(8)
    with torch.no_grad():
        assert torch.equal(WinogradConv3x3(weight, bias)(x), F.conv2d(x, weight, bias, padding=1))
    with pytest.raises(ValueError, match="2 or 4"):
        WinogradConv3x3(weight, bias, m=6)


class _Bottleneck(nn.Module):
    """The CLIP ResNet layout: convN followed by bnN in the same module."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.small = nn.Conv2d(c, 16, 3, padding=1)  # too few channels: kept
        self.strided = nn.Conv2d(c, c, 3, stride=2, padding=1)  # not stride 1: kept

    def forward(self, x):
        y = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return y, self.small(y), self.strided(y)


def test_rewrite_folds_batch_norm_and_leaves_the_original_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(_Bottleneck(CHANNELS[0]))
    for bn in (net[0].bn1, net[0].bn2):  # non-trivial statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    assert winograd_layers(net) == ["0.conv2"]
    fast = winograd_rewrite(net)
    x = torch.randn(1, CHANNELS[0], 16, 16)
    with torch.no_grad():
        ref, out = net(x), fast(x)
    for a, b in zip(out, ref):
        assert _rel(a, b) < 1e-5
    assert isinstance(fast[0].conv2, WinogradConv3x3) and isinstance(fast[0].bn2, nn.Identity)
    assert type(net[0].conv2) is nn.Conv2d and type(net[0].bn2) is nn.BatchNorm2d  # the original is as it was
    assert fast[0].conv1 is net[0].conv1 and fast[0].small is net[0].small  # the rest is shared


@pytest.mark.skipif(not openvino_available(), reason="pip install 'ovsam[openvino]'")
def test_openvino_runs_the_winograd_graph():
    import openvino as ov

    torch.manual_seed(0)
    conv = nn.Conv2d(CHANNELS[0], CHANNELS[0], 3, padding=1).eval()
    x = torch.randn(1, CHANNELS[0], 16, 24)
    graph = winograd_rewrite(nn.Sequential(conv))
    assert isinstance(graph[0], WinogradConv3x3)
    with torch.no_grad():
        ov_model = ov.convert_model(graph, example_input=(x,), input=[(tuple(x.shape), ov.Type.f32)])
        ref = conv(x)
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    y = torch.from_numpy(compiled(x.numpy())[0])
    assert _rel(y, ref) < 1e-5

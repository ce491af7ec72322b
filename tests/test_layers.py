import pytest
import torch
from torch.nn import functional as F

from rtseg.models.layers import AtrousConv2d


@pytest.mark.parametrize("size, dilation, kernel", [((9, 13), 4, 7), ((10, 11), 2, 3), ((5, 5), 3, 3)])
def test_atrous_conv_equals_dilated_conv_forward_and_backward(size, dilation, kernel):
    padding = dilation * (kernel - 1) // 2
    layer = AtrousConv2d(6, 5, kernel, padding=padding, dilation=dilation)
    x = torch.randn(2, 6, *size, requires_grad=True)
    ours = layer(x)  # CPU + grad enabled: the space-to-batch path
    ours.square().sum().backward()
    grads = (x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    x.grad = None
    layer.zero_grad()
    reference = F.conv2d(x, layer.weight, layer.bias, padding=padding, dilation=dilation)
    reference.square().sum().backward()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, (x.grad, layer.weight.grad, layer.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert set(layer.state_dict()) == {"weight", "bias"}

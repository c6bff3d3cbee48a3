"""Frozen BatchNorm folded into its convolution: the same function and gradients, the same state dict,
and the ordinary layers wherever a batch norm trains or a convolution's output goes elsewhere too."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cnnlab.finetune.fold import conv_bn_pairs, fold_batchnorm


class Net(nn.Module):
    """conv-bn-relu twice, a conv without BN, and a conv whose output also feeds a skip (not foldable)."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        y = self.c3(x)
        x = self.b3(y) + y  # c3's output is used twice: folding b3 into it would change the skip
        return self.head(x.mean((2, 3)))


def _randomised(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


def test_only_a_convolution_feeding_its_batch_norm_alone_is_paired():
    net = Net()
    assert [(c, b) for c, b in conv_bn_pairs(net)] == [(net.c1, net.b1), (net.c2, net.b2)]


def test_folded_eval_network_computes_the_same_outputs_and_gradients():
    ref = _randomised(Net()).eval()
    net = copy.deepcopy(ref)
    assert fold_batchnorm(net) == 2
    x = torch.randn(4, 3, 10, 10)
    out_ref, out = ref(x), net(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), p in zip(ref.named_parameters(), net.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert net.state_dict().keys() == ref.state_dict().keys()  # checkpoints and model files unchanged


def test_a_training_batch_norm_runs_as_before_and_updates_its_statistics():
    ref = _randomised(Net()).train()
    net = copy.deepcopy(ref)
    fold_batchnorm(net)
    x = torch.randn(4, 3, 10, 10)
    torch.testing.assert_close(net(x), ref(x))
    torch.testing.assert_close(net.b1.running_mean, ref.b1.running_mean)
    assert not torch.equal(net.b1.running_mean, _randomised(Net()).b1.running_mean)


def test_a_deep_copy_folds_into_its_own_layers():
    """EMA keeps a deepcopy: its folded convolutions must read the copy's batch norms, not the original's."""
    net = _randomised(Net()).eval()
    fold_batchnorm(net)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin.b1.weight.mul_(3)
    x = torch.randn(2, 3, 10, 10)
    assert not torch.allclose(twin(x), net(x))
    assert twin.c1.__dict__["_cnnlab_folded_bn"] is twin.b1


def test_folding_twice_folds_once_and_untraceable_networks_are_left_alone():
    net = _randomised(Net()).eval()
    assert fold_batchnorm(net) == 2 and fold_batchnorm(net) == 0

    class DataDependent(Net):
        def forward(self, x):
            return super().forward(x) if x.sum() > 0 else super().forward(-x)

    assert fold_batchnorm(DataDependent()) == 0


def test_timm_efficientnet_blocks_fold_with_their_activation():
    timm = pytest.importorskip("timm")
    ref = _randomised(timm.create_model("efficientnet_lite0", num_classes=4)).eval()
    net = copy.deepcopy(ref)
    assert fold_batchnorm(net) == 49  # every BatchNormAct2d of Lite0 follows its own convolution
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-4, atol=1e-4)


def test_statistics_read_under_inference_mode_still_train_and_a_changed_statistic_is_read_anew():
    ref = _randomised(Net()).eval()
    net = copy.deepcopy(ref)
    fold_batchnorm(net)
    x = torch.randn(2, 3, 10, 10)
    with torch.inference_mode():  # a validation pass first: what it keeps must serve a training step after it
        net(x)
    net(x).sum().backward()
    assert net.b1.weight.grad is not None and net.c1.weight.grad is not None
    with torch.no_grad():
        ref.b1.running_var.mul_(4)
        net.b1.running_var.mul_(4)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)

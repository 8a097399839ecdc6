"""What a noisy run releases (espnet_pcc.core.release): running statistics, other buffers."""
import pytest
import torch

from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.core.release import BufferGuard, check_running_statistics, \
    freeze_running_statistics, modules_with_running_statistics


class WithNorms(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.instance = torch.nn.InstanceNorm1d(4, track_running_stats=True)
        self.untracked = torch.nn.BatchNorm1d(4, track_running_stats=False)
        self.group = torch.nn.GroupNorm(2, 4)
        self.layer = torch.nn.LayerNorm(4)

    def forward(self, x):
        h = self.instance(self.bn(self.linear(x)).unsqueeze(-1).repeat(1, 1, 2)).mean(-1)
        return self.layer(self.group(self.untracked(h)))


def config(**conf):
    return ClipConfig.from_options("per_core", {"max_norm": 1.0, **conf})


def test_the_layers_with_running_statistics_are_found():
    assert [n for n, _ in modules_with_running_statistics(WithNorms())] == ["bn", "instance"]


def test_with_noise_running_statistics_are_refused_unless_frozen():
    model = WithNorms()
    with pytest.raises(ClipConfigError, match=r"noise_multiplier=1 with bn \(BatchNorm1d\) "
                                              r"\(and 1 more\): its running statistics"):
        check_running_statistics(model, config(noise_multiplier=1.0))
    check_running_statistics(model, config(noise_multiplier=1.0, running_stats="freeze"))
    check_running_statistics(model, config())  # no noise: nothing is promised


def test_frozen_statistics_stay_as_built_through_training_forwards():
    model = WithNorms()
    model.train()
    freeze_running_statistics(model)
    model(torch.randn(8, 3) * 5 + 3).sum().backward()
    assert torch.equal(model.bn.running_mean, torch.zeros(4))
    assert torch.equal(model.bn.running_var, torch.ones(4))
    assert int(model.bn.num_batches_tracked) == 0
    assert model.training and model.linear.training and not model.bn.training


def test_the_buffer_guard_names_a_changed_buffer():
    model = WithNorms()
    guard = BufferGuard(model)
    guard.check(1.0)
    model.train()
    model(torch.randn(8, 3))
    with pytest.raises(ClipConfigError, match="noise_multiplier=1: the model's buffer "
                                              "bn.running_mean changed in a training step"):
        guard.check(1.0)


def test_log_train_stats_without_noise_is_refused():
    with pytest.raises(ClipConfigError, match="log_train_stats=true has no effect without"):
        config(log_train_stats=True)
    with pytest.raises(ClipConfigError, match="running_stats=freeze needs the per-core loop"):
        ClipConfig.from_options("global", {"running_stats": "freeze"})
    with pytest.raises(ClipConfigError, match="running_stats must be one of update, freeze"):
        config(running_stats="group_norm")

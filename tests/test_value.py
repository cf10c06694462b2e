"""The value baseline's target standardisation (Pop-Art): new statistics never move a prediction."""

import torch

from trpo_exp.algos.value import draw_orders, fit_value
from trpo_exp.nets import ValueNet


def test_new_target_statistics_leave_every_prediction_unchanged():
    torch.manual_seed(0)
    net = ValueNet(3, [16], "tanh", normalize_targets=True)
    obs = torch.randn(50, 3)
    before = net(obs)
    net.update_target_stats(torch.randn(200) * 40 + 300)
    assert float(net.target_mean) > 250 and float(net.target_std) > 30
    torch.testing.assert_close(net(obs), before, rtol=0, atol=1e-4)
    assert torch.allclose(net.normalize(torch.tensor([float(net.target_mean)])), torch.zeros(1))


def test_standardised_fit_learns_large_targets_the_plain_fit_does_not():
    obs = torch.randn(512, 3, generator=torch.Generator().manual_seed(1))
    targets = 500 + 100 * obs[:, 0]

    def residual(normalize: bool) -> float:
        torch.manual_seed(0)
        net = ValueNet(3, [32, 32], "tanh", normalize_targets=normalize)
        net.update_target_stats(targets)
        fit_value(net, torch.optim.Adam(net.parameters(), lr=3e-3), obs, targets,
                  draw_orders(len(obs), epochs=40, device=obs.device), batch_size=64)
        with torch.no_grad():
            return float((net(obs) - targets).pow(2).mean() / targets.var())

    assert residual(True) < 0.05 < 0.5 < residual(False)


def test_plain_value_net_has_no_extra_state():
    assert set(ValueNet(3, [8], "tanh").state_dict()) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}

"""`build_optimizer`: AdamW with no decay on biases/norms, the fused kernel on CPU, the same update as torch's
reference (for-loop) AdamW."""

from __future__ import annotations

import torch

from tether.train.loop import TrainConfig, build_optimizer


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    model[0].weight.requires_grad_(False)  # frozen: not in the optimizer
    return model


def test_fused_adamw_groups_and_matches_the_reference_update():
    cfg = TrainConfig(learning_rate=1e-2, weight_decay=0.1)
    model, reference = _model(0), _model(0)
    opt = build_optimizer(model, cfg)
    assert opt.defaults["fused"] is True
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [(3, 5)] and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0  # 2 biases + LayerNorm weight, bias
    ref_opt = torch.optim.AdamW([{"params": [reference[2].weight], "weight_decay": 0.1},
                                 {"params": [reference[0].bias, reference[1].weight, reference[1].bias,
                                             reference[2].bias], "weight_decay": 0.0}],
                                lr=1e-2, eps=cfg.adam_epsilon, foreach=False)
    x = torch.randn(4, 6)
    for _ in range(3):
        for m, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            m(x).square().sum().backward()
            o.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(model[2].weight, _model(0)[2].weight)  # it did move

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


def test_scaled_parameters_get_their_own_learning_rate_through_the_schedule():
    from tether.train.loop import build_scheduler

    cfg = TrainConfig(learning_rate=1e-3, weight_decay=0.1, max_steps=10, lr_scheduler_type="linear")
    model = _model(0)
    head = model[2]
    opt = build_optimizer(model, cfg, scaled=list(head.parameters()), lr_scale=50.0)
    assert [len(g["params"]) for g in opt.param_groups] == [0, 3, 1, 1]  # rest: decay, no decay; head: both
    assert opt.param_groups[2]["params"][0] is head.weight and opt.param_groups[2]["weight_decay"] == 0.1
    assert opt.param_groups[3]["params"][0] is head.bias and opt.param_groups[3]["weight_decay"] == 0.0
    scheduler = build_scheduler(opt, cfg)
    for _ in range(4):
        opt.step()
        scheduler.step()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs[0] == lrs[1] == 1e-3 * 0.6 and lrs[2] == lrs[3] == 5e-2 * 0.6  # linear decay, 4 of 10 steps
    # without scaled parameters the groups are the usual two
    assert len(build_optimizer(model, cfg, scaled=[], lr_scale=50.0).param_groups) == 2

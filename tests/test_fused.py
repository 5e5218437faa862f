import pytest
import torch

from marl import names
from marl.data import load_dataset
from marl.fused import FusedTrainer, fuse_key
from marl.train import Trainer


@pytest.fixture
def members(tiny_cfg):
    return [tiny_cfg.replace(gamma=0.1, seed=0), tiny_cfg.replace(alpha=0.5, seed=1),
            tiny_cfg.replace(beta=1.0, gamma=0.0, seed=2)]


def test_fused_and_unfused_give_the_same_gradients(members):
    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    fused = FusedTrainer(members, data, cpu)
    g = torch.Generator().manual_seed(5)
    batch = data.train.x[:64]
    noise = torch.randn(3, 64, members[0].latent_dim, generator=g)
    k = len(members)
    terms = fused.batch_terms(batch.expand(k, *batch.shape), noise.expand(k, *noise.shape))
    terms[:, 0].sum().backward()
    for i, cfg in enumerate(members):
        single = Trainer(cfg, data, cpu)
        from marl.train import objective

        t = objective(single.model, batch[:, 0], batch[:, 1], noise, single.weights,
                      data.train.x.shape[0], cfg.estimator)
        t.total.backward()
        assert torch.allclose(terms[i], torch.stack(tuple(t)).detach(), rtol=1e-5, atol=1e-4)
        for name, p in single.model.named_parameters():
            assert torch.allclose(fused.params[name].grad[i], p.grad, rtol=1e-4, atol=1e-5), name


def test_fused_training_follows_each_members_own_run(members):
    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    fused = FusedTrainer(members, data, cpu)
    fused_epochs = [fused.run_epoch() for _ in range(2)]
    for i, cfg in enumerate(members):
        single = Trainer(cfg, data, cpu)
        for epoch in range(2):
            expected = single.run_epoch()
            for key, value in expected.items():
                assert fused_epochs[epoch][i][key] == pytest.approx(value, rel=1e-3, abs=1e-3), (i, epoch, key)
        for name, p in single.model.state_dict().items():
            assert torch.allclose(fused.member(i).state_dict()[name], p, atol=1e-4), name


def test_only_compatible_configurations_fuse(tiny_cfg):
    assert fuse_key(tiny_cfg.replace(gamma=1.0, seed=3)) == fuse_key(tiny_cfg)
    assert fuse_key(tiny_cfg.replace(latent_dim=8)) != fuse_key(tiny_cfg)
    with pytest.raises(ValueError):
        FusedTrainer([tiny_cfg, tiny_cfg.replace(lr=0.1)], load_dataset(tiny_cfg), torch.device("cpu"))


def test_fused_checkpoint_round_trip(members):
    import copy

    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    a = FusedTrainer(members, data, cpu)
    a.run_epoch()
    state = copy.deepcopy(a.state_dict())
    expected = a.run_epoch()
    b = FusedTrainer(members, data, cpu)
    b.load_state_dict(state)
    got = b.run_epoch()
    assert [g[names.loss("total")] for g in got] == pytest.approx([e[names.loss("total")] for e in expected], rel=1e-6)

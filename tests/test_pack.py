import pytest
import torch

from marl import names
from marl.data import load_dataset
from marl.trainer import Trainer, objective, pack_key


@pytest.fixture
def members(tiny_cfg):
    return [tiny_cfg.replace(gamma=0.1, seed=0), tiny_cfg.replace(alpha=0.5, seed=1),
            tiny_cfg.replace(beta=1.0, gamma=0.0, seed=2)]


@pytest.mark.parametrize("vectorise", [False, True])  # in turn (a CPU's default), vmap (a GPU's)
def test_packed_and_single_trainers_give_the_same_gradients(members, vectorise):
    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    packed = Trainer(members, data, cpu, vectorise=vectorise)
    g = torch.Generator().manual_seed(5)
    batch = data.train.x[:64]
    noise = torch.randn(3, 64, members[0].latent_dim, generator=g)
    k = len(members)
    terms = packed.batch_terms(batch.expand(k, *batch.shape), noise.expand(k, *noise.shape))[0]
    terms[:, 0].sum().backward()
    for i, cfg in enumerate(members):
        single = Trainer(cfg, data, cpu)
        model = single.member(0)
        t = objective(model, batch[:, 0], batch[:, 1], noise, single.weights[0],
                      data.train.x.shape[0], cfg.estimator)[0]
        t.total.backward()
        assert torch.allclose(terms[i], torch.stack(tuple(t)).detach(), rtol=1e-5, atol=1e-4)
        for name, p in model.named_parameters():
            assert torch.allclose(packed.params[name].grad[i], p.grad, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("vectorise", [False, True])
def test_packed_training_follows_each_members_own_run(members, vectorise):
    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    packed = Trainer(members, data, cpu, vectorise=vectorise, chunk_size=2 if vectorise else None)
    packed_epochs = [packed.run_epoch() for _ in range(2)]
    for i, cfg in enumerate(members):
        single = Trainer(cfg, data, cpu)
        for epoch in range(2):
            expected = single.run_epoch()[0]
            for key, value in expected.items():
                assert packed_epochs[epoch][i][key] == pytest.approx(value, rel=1e-3, abs=1e-3), (i, epoch, key)
        for name, p in single.member(0).state_dict().items():
            assert torch.allclose(packed.member(i).state_dict()[name], p, atol=1e-4), name


def test_only_compatible_configurations_pack(tiny_cfg):
    assert pack_key(tiny_cfg.replace(gamma=1.0, seed=3)) == pack_key(tiny_cfg)
    assert pack_key(tiny_cfg.replace(latent_dim=8)) != pack_key(tiny_cfg)
    with pytest.raises(ValueError):
        Trainer([tiny_cfg, tiny_cfg.replace(lr=0.1)], load_dataset(tiny_cfg), torch.device("cpu"))


def test_packed_checkpoint_round_trip(members):
    import copy

    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    a = Trainer(members, data, cpu)
    a.run_epoch()
    state = copy.deepcopy(a.state_dict())
    expected = a.run_epoch()
    b = Trainer(members, data, cpu)
    b.load_state_dict(state)
    got = b.run_epoch()
    assert [g[names.loss("total")] for g in got] == pytest.approx([e[names.loss("total")] for e in expected], rel=1e-6)


def test_packed_members_are_probed_as_in_their_own_runs(members):
    """Each member's probes draw from its own seed: packed, its figures are its solo run's."""
    cpu = torch.device("cpu")
    data = load_dataset(members[0])
    pair = [members[0], members[0].replace(gamma=0.5, seed=7)]  # the second seed must not borrow the first's
    packed = Trainer(pair, data, cpu)
    packed.run_epoch()
    together = [m for m, _ in packed.evaluate()]
    keys = [names.probe(latent, task, "test", kind) for latent in names.LATENTS for task in names.TASKS
            for kind in names.PROBE_KINDS]
    for cfg, metrics in zip(pair, together):
        single = Trainer(cfg, data, cpu)
        single.run_epoch()
        alone = single.evaluate()[0][0]
        for key in keys:
            assert metrics[key] == alone[key], (cfg.seed, key)  # on a CPU: its own run's arithmetic

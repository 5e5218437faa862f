"""marl.hear: the HEAR 2021 common API over a model.pt (docs/hear.md)."""

import numpy as np
import pandas as pd
import pytest
import torch

from marl import hear, names
from marl.config import Config
from marl.data import generate
from marl.errors import UserError
from marl.features import n_samples_for
from marl.member import model_file
from marl.trainer import Trainer
from tests.conftest import TINY

D = TINY["latent_dim"]
SMALLER = {"n_train_pairs": 64, "n_test_pairs": 16, "n_val_pairs": 16, "batch_size": 32, "epochs": 1,
           "device": "cpu"}  # a trained model.pt, not a good one: two batches, no evaluation


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A packed trainer of two members, one epoch: member 0 saved as `marl.train` saves its
    model.pt, member 1 as a packed sweep trial's final checkpoint saves `m1/model.pt`."""
    from marl.trainable import write_checkpoint

    root = tmp_path_factory.mktemp("hear")
    cfg = Config.from_dict({**TINY, **SMALLER})
    data = generate(cfg)  # no cache: a module fixture runs outside conftest's per-test MARL_CACHE
    trainer = Trainer([cfg, cfg.replace(seed=1)], data, torch.device("cpu"))
    trainer.run_epoch()
    torch.save(model_file(cfg, trainer.member(0), data), root / "model.pt")
    member = model_file(trainer.cfgs[1], trainer.member(1), data)
    write_checkpoint(root / "checkpoint", {"trainer": {"epoch": 1}},
                     {names.member_prefix(1, True): ({"epoch": 1}, pd.DataFrame({"x": [0]}), member)})
    return root / "model.pt", root / "checkpoint" / "m1" / "model.pt"


@pytest.fixture(scope="module")
def models(saved):
    return {latents: hear.load_model(str(saved[0]), latents) for latents in hear.LATENTS}


def sounds(model, n=3, seconds=1.0, seed=0):
    """n different sounds: noise at different levels, the last a loud sine."""
    gen = torch.Generator().manual_seed(seed)
    length = round(seconds * model.sample_rate)
    audio = (2 * torch.rand(n, length, generator=gen) - 1) * torch.linspace(0.05, 1.0, n)[:, None]
    audio[-1] = 0.9 * torch.sin(2 * torch.pi * 440 * torch.arange(length) / model.sample_rate)
    return audio


@pytest.mark.parametrize("latents,width", [("private", D), ("shared", D), ("both", 2 * D)])
def test_shapes_dtypes_and_sizes_for_each_latents_choice(models, latents, width):
    model = models[latents]
    assert isinstance(model, torch.nn.Module) and not model.marl.training
    assert model.sample_rate == 44100 and isinstance(model.sample_rate, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size == width
    audio = sounds(model, n=2, seconds=0.5)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    n_t = audio.shape[1] // model.hop + 1
    assert emb.shape == (2, n_t, width) and emb.dtype == torch.float32
    assert ts.shape == (2, n_t) and ts.dtype == torch.float32
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, width) and scene.dtype == torch.float32


def test_both_is_private_then_shared(models):
    audio = sounds(models["both"], n=2, seconds=0.3)
    both = hear.get_timestamp_embeddings(audio, models["both"])[0]
    private = hear.get_timestamp_embeddings(audio, models["private"])[0]
    shared = hear.get_timestamp_embeddings(audio, models["shared"])[0]
    assert torch.equal(both, torch.cat([private, shared], -1))
    assert not torch.allclose(private, shared)


@pytest.mark.parametrize("n_samples", [44100, 10007, 100])
def test_timestamps_start_at_zero_every_50_ms_and_cover_the_sound(models, n_samples):
    model = models["both"]
    _, ts = hear.get_timestamp_embeddings(torch.zeros(2, n_samples), model)
    ts = ts.numpy()
    duration_ms = 1000 * n_samples / model.sample_rate
    assert np.array_equal(ts[0], ts[1]) and ts[0, 0] == 0.0
    if ts.shape[1] > 1:
        np.testing.assert_allclose(np.diff(ts[0]), 1000 * hear.HOP_SECONDS, atol=1e-3)
    assert ts[0, -1] <= duration_ms < ts[0, -1] + 1000 * hear.HOP_SECONDS


def test_each_embedding_encodes_the_clip_centred_on_its_timestamp(models):
    model = models["both"]
    audio = sounds(model, n=1, seconds=0.3)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    length = n_samples_for(model.cfg)
    padded = torch.nn.functional.pad(audio[0], (length, length))  # zeros beyond the edges
    for k in (0, 3, emb.shape[1] - 1):
        centre = round(float(ts[0, k]) * model.sample_rate / 1000)
        clip = padded[length + centre - length // 2:][:length]
        np.testing.assert_allclose(emb[0, k], hear.encode_clips(model, clip[None])[0], atol=1e-5)


def test_a_sounds_embedding_does_not_depend_on_its_batch_mates(models):
    model = models["both"]
    batch = sounds(model, n=4, seconds=0.5)
    alone = hear.get_timestamp_embeddings(batch[:1], model)[0]
    together = hear.get_timestamp_embeddings(batch, model)[0]
    assert not torch.allclose(together[0], together[3])  # the batch-mates do differ
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=0)
    many = torch.cat([batch[:1], sounds(model, n=1, seconds=0.5, seed=1).expand(40, -1)])  # > CHUNK windows
    torch.testing.assert_close(hear.get_timestamp_embeddings(many, model)[0][:1], alone, atol=1e-5, rtol=0)


def test_scene_embedding_is_the_mean_over_time(models):
    model = models["shared"]
    audio = sounds(model, n=3, seconds=0.5)
    emb, _ = hear.get_timestamp_embeddings(audio, model)
    torch.testing.assert_close(hear.get_scene_embeddings(audio, model), emb.mean(1))
    assert not torch.allclose(emb[:, 0], emb[:, 5])  # the mean is over embeddings that differ


def test_random_one_second_sounds_give_finite_embeddings(models):
    model = models["both"]
    audio = torch.rand(4, model.sample_rate)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert torch.isfinite(emb).all() and torch.isfinite(ts).all()
    assert torch.isfinite(hear.get_scene_embeddings(torch.zeros(1, 10), model)).all()  # silence too


def test_a_packed_members_model_pt_loads_as_its_own_model(saved, models):
    member = hear.load_model(str(saved[1]), "both")
    assert member.marl.cfg.seed == 1 and member.timestamp_embedding_size == 2 * D
    audio = sounds(member, n=2, seconds=0.3)
    emb = hear.get_timestamp_embeddings(audio, member)[0]
    assert torch.isfinite(emb).all()
    assert not torch.allclose(emb, hear.get_timestamp_embeddings(audio, models["both"])[0])


def test_latents_come_from_the_argument_then_the_environment_then_both(saved, monkeypatch):
    path = str(saved[0])
    monkeypatch.delenv(hear.ENV, raising=False)
    assert hear.load_model(path).latents == "both"
    monkeypatch.setenv(hear.ENV, "shared")
    assert hear.load_model(path).latents == "shared" and hear.load_model(path).scene_embedding_size == D
    assert hear.load_model(path, "private").latents == "private"
    monkeypatch.setenv(hear.ENV, "")
    assert hear.load_model(path).latents == "both"


def test_bad_latents_are_one_line_user_errors(saved, monkeypatch):
    monkeypatch.delenv(hear.ENV, raising=False)
    with pytest.raises(UserError, match="^latents: must be one of private, shared, both") as err:
        hear.load_model(str(saved[0]), "timbre")
    assert "\n" not in str(err.value)
    monkeypatch.setenv(hear.ENV, "pitch")
    with pytest.raises(UserError, match=f"^{hear.ENV}: must be one of"):
        hear.load_model(str(saved[0]))


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="model_file_path"):
        hear.load_model("", "both")
    with pytest.raises(UserError, match="no such file"):
        hear.load_model(str(tmp_path / "missing.pt"), "both")


@pytest.mark.parametrize("shape", [(100,), (1, 2, 100)])
def test_audio_that_is_not_2d_is_a_user_error(models, shape):
    for api in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
        with pytest.raises(UserError, match=r"^audio: must be a 2-D tensor \(n_sounds, n_samples\)"):
            api(torch.zeros(shape), models["both"])

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from marl import names
from marl.data import load_dataset
from marl.trainer import Trainer
from tests.conftest import in_process, run_module, tiny_flags


@pytest.mark.parametrize("arch,estimator", [("mlp", "mss"), ("conv", "mws")])
def test_a_few_epochs_lower_the_loss(tiny_cfg, arch, estimator):
    cfg = tiny_cfg.replace(arch=arch, estimator=estimator, gamma=0.5, alpha=0.1, beta=0.1)
    trainer = Trainer(cfg, load_dataset(cfg), torch.device("cpu"))
    first = trainer.run_epoch()[0][names.loss("total")]
    for _ in range(3):
        last = trainer.run_epoch()[0][names.loss("total")]
    assert last < first


def test_training_is_reproducible_from_the_seed(tiny_cfg):
    data = load_dataset(tiny_cfg)
    runs = [Trainer(tiny_cfg, data, torch.device("cpu")).run_epoch()[0] for _ in range(2)]
    assert runs[0] == runs[1]
    other = Trainer(tiny_cfg.replace(seed=1), data, torch.device("cpu")).run_epoch()[0]
    assert other != runs[0]


def test_a_process_that_ran_another_trial_first_gives_the_same_figures(tiny_cfg):
    # sweeps reuse a worker process for trial after trial (marl.tuner: reuse_actors), so nothing
    # a trial leaves behind in the process (the global RNG, caches) may change the next one
    from marl.train import train

    data = load_dataset(tiny_cfg)
    first = train(tiny_cfg, data, progress=False)[1]
    train(tiny_cfg.replace(seed=3, gamma=1.0), data, progress=False)
    torch.manual_seed(12345)  # a stray draw of the global generator in between
    again = train(tiny_cfg, data, progress=False)[1]
    scalars = [k for k in first if k.startswith(("probe/", "loss/", "separation/"))]
    assert scalars and {k: again[k] for k in scalars} == {k: first[k] for k in scalars}


@pytest.mark.parametrize("schedule", [{}, {"schedule": "cosine", "warmup": 0.3}])
def test_checkpoint_round_trip_continues_identically(tiny_cfg, schedule):
    cfg = tiny_cfg.replace(**schedule)
    data = load_dataset(cfg)
    a = Trainer(cfg, data, torch.device("cpu"))
    a.run_epoch()
    state = copy.deepcopy(a.state_dict())  # state_dict holds live tensors
    expected = a.run_epoch()
    b = Trainer(cfg, data, torch.device("cpu"))
    b.load_state_dict(state)
    assert b.run_epoch() == expected and b.epoch == 2


@pytest.mark.parametrize("total, warmup", [(40, 0.0), (40, 0.1), (7, 0.3), (5, 0.5)])
def test_learning_rate_schedules_are_torchs(total, warmup):
    """Linear warm-up from lr/warm-steps to lr, then a half cosine to 0: torch's LinearLR and
    CosineAnnealingLR in sequence. (Ours is a function of the step, so that a resumed run
    needs no scheduler state.)"""
    from marl.config import Config
    from marl.trainer import learning_rate

    cfg = Config(lr=3e-3, schedule="cosine", warmup=warmup)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    warm = round(warmup * total)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm)
    schedulers = cosine if not warm else torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, 1 / warm, 1.0, total_iters=max(1, warm - 1)), cosine], [warm])
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedulers.step()
    assert [learning_rate(cfg, step, total) for step in range(total)] == pytest.approx(theirs, rel=1e-9, abs=1e-15)
    assert learning_rate(cfg.replace(schedule="constant", warmup=0.0), total - 1, total) == cfg.lr


def test_a_cosine_schedule_sets_each_steps_learning_rate(tiny_cfg):
    from marl.trainer import learning_rate

    cfg = tiny_cfg.replace(schedule="cosine", warmup=0.25)
    data = load_dataset(cfg)
    trainer, constant = Trainer(cfg, data, torch.device("cpu")), Trainer(tiny_cfg, data, torch.device("cpu"))
    steps = cfg.n_train_pairs // cfg.batch_size
    first = trainer.run_epoch()
    after_one = trainer.opt.param_groups[0]["lr"]
    assert after_one == learning_rate(cfg, steps - 1, cfg.epochs * steps) < cfg.lr
    assert first != constant.run_epoch() and constant.opt.param_groups[0]["lr"] == cfg.lr
    trainer.run_epoch()  # the second epoch goes on where the first ended
    assert trainer.opt.param_groups[0]["lr"] == learning_rate(cfg, 2 * steps - 1, cfg.epochs * steps) < after_one


def run_cli(*args, cwd=None):
    return run_module("marl.train", *args, cwd=cwd)


TINY_FLAGS = tiny_flags("umap")  # umap: each test says


def test_cli_end_to_end_writes_every_output(tmp_path):
    out = tmp_path / "run"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"gamma": 0.5, "umap": True}))
    proc = run_cli(*TINY_FLAGS, "--config", str(cfg_file), "--gamma", "0.25", "--out", str(out), "--listen",
                   "--eval-every", "1")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["gamma"] == 0.25 and cfg["umap"] is True and cfg["latent_dim"] == 4  # flag beats file
    metrics = json.loads((out / "metrics.json").read_text())
    for latent in names.LATENTS:
        for task in names.TASKS:
            for split in names.SPLITS:
                for kind in names.PROBE_KINDS:
                    assert 0.0 <= metrics[names.probe(latent, task, split, kind)] <= 1.0
    for factor in names.TASKS:
        for sub in names.SUBSPACES:
            assert len(metrics[names.mi(factor, sub)]) == 4
            assert metrics[names.mi_baseline(factor, sub)] >= 0.0
    for key in ("loss/recon", "loss/mi", "loss/tc", "loss/dim_kl", names.SEPARATION, names.SELECTION,
                names.LEAKAGE, "separation/test/linear", "mig/private", "mig/shared"):
        assert key in metrics
    latents = pd.read_parquet(out / "latents.parquet")
    assert len(latents) == 2 * 96
    assert {"timbre", "pitch_class", "frequency", "amplitude", "private_0", "shared_3", "umap_shared_x"} <= set(latents.columns)
    assert set(latents["timbre_name"]) == {"sine", "triangle", "sawtooth", "square"}  # the UMAP legend's labels
    state = torch.load(out / "model.pt", weights_only=True)
    assert "model" in state
    for fig in ("mi_heatmap", "umap", "loss_curves", "reconstructions", "swap"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 1000
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert epochs["epoch"].tolist() == [1, 2] and epochs["loss/recon"].notna().all()
    # --eval-every 1: probe figures after each epoch, the last one the final evaluation's
    probe = names.probe("shared", "timbre", "test", "mlp")
    assert epochs[probe].between(0, 1).all() and epochs[names.SEPARATION].notna().all()
    assert epochs[probe].iloc[-1] == pytest.approx(metrics[probe])
    import soundfile

    for name in ("input_0", "reconstruction_0", "swap_A_private_B_shared_3"):  # --listen
        wave, rate = soundfile.read(out / "audio" / f"{name}.wav")
        assert rate == cfg["sample_rate"] and 0 < abs(wave).max() <= 0.9 + 1e-4
    assert "separation" in proc.stdout and "dim-KL (nats)" in proc.stdout


@pytest.mark.parametrize("estimator", ["bank", "mws"])
def test_train_reports_the_exact_decomposition_and_the_estimators_error(tmp_path, estimator, capsys):
    from marl.train import main

    out = tmp_path / "run"
    main([*TINY_FLAGS, "--estimator", estimator, "--gamma", "0.1", "--bank-size", "128", "--umap", "false",
          "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    for subspace in names.KL_SUBSPACES:
        exact = {t: metrics[names.kl_exact(subspace, t)] for t in names.KL_TERMS}
        assert exact["mi"] >= 0 and exact["dim_kl"] >= 0  # KLs; the MC average of 256 samples stays ≥ 0 here
        assert math.isfinite(metrics[names.kl_bias(subspace, "tc")])
        if estimator == "mws":  # MWS's weights sum to B/(B·N) = 1/N: about log N too much MI
            assert metrics[names.kl_bias(subspace, "mi")] > 0.5 * math.log(256)
    assert f"{estimator}'s error" in capsys.readouterr().out


@pytest.mark.parametrize("args,field", [
    (["--gamma", "nan"], "gamma"),
    (["--alpha", "-1"], "alpha"),
    (["--beta", "inf"], "beta"),
    (["--latent-dim", "0"], "latent_dim"),
    (["--estimator", "foo"], "estimator"),
    (["--likelihood", "l1"], "likelihood"),
    (["--bank-size", "0"], "bank_size"),
    (["--arch", "transformer"], "arch"),
    (["--probe-input", "median"], "probe_input"),
    (["--logvar-min", "-100"], "logvar_min"),
    (["--schedule", "linear"], "schedule"),
    (["--warmup", "1"], "warmup"),
    (["--warmup", "0.1"], "warmup"),  # with the default constant schedule it would do nothing
    (["--epochs", "two"], "epochs"),
    (["--config", "/nonexistent/cfg.json"], "config"),
    (["--out", "/etc/hostname/run"], "out"),
    (["--no-such-flag", "1"], "no-such-flag"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, field):
    out_args = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    proc = in_process("marl.train", *args, *out_args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_help_says_what_each_config_fields_comment_says():
    proc = in_process("marl.train", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "per subspace, as in the paper's figures (default: 8)" in text  # latent_dim's comment
    assert "entries drawn per step (K)" in text  # bank_size's, from the comment lines above it


def test_the_command_line_exits_2_on_bad_input(tmp_path):
    proc = run_cli("--gamma", "nan", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "gamma" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_probing_posterior_samples_gives_other_codes_than_the_means(tiny_cfg):
    from marl.evaluate import encode

    data = load_dataset(tiny_cfg)
    trainer = Trainer(tiny_cfg, data, torch.device("cpu"))
    trainer.run_epoch()
    model = trainer.member(0)
    means = encode(model, data.test, "cpu")
    draws = [encode(model, data.test, "cpu", sample_seed=s) for s in (0, 0, 1)]
    assert means["fused"].shape == (len(data.test), tiny_cfg.latent_dim)  # one code per pair
    assert not np.allclose(draws[0]["shared"], means["shared"])
    assert np.array_equal(draws[0]["private"], draws[1]["private"])  # seeded
    assert not np.allclose(draws[0]["private"], draws[2]["private"])
    # a draw lies within a few posterior standard deviations of its mean
    assert np.abs(draws[0]["shared"] - means["shared"]).max() < 10


def test_unparseable_config_file_is_rejected(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = in_process("marl.train", "--config", bad, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "config" in proc.stderr and "Traceback" not in proc.stderr
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"gama": 1}')
    proc = in_process("marl.train", "--config", unknown, "--out", tmp_path / "run")
    assert proc.returncode == 2 and "gama" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_mixed_precision_trains_and_stays_close_to_fp32(tiny_cfg):
    data = load_dataset(tiny_cfg)
    fp32 = Trainer(tiny_cfg, data, torch.device("cpu")).run_epoch()[0][names.loss("total")]
    amp = Trainer(tiny_cfg.replace(amp=True), data, torch.device("cpu"))
    first = amp.run_epoch()[0][names.loss("total")]
    assert first == pytest.approx(fp32, rel=0.05)
    for _ in range(3):
        last = amp.run_epoch()[0][names.loss("total")]
    assert last < first
    assert all(p.dtype == torch.float32 for p in amp.params.values())  # master weights fp32


def test_a_compiled_step_trains_like_the_eager_one(tiny_cfg):
    data = load_dataset(tiny_cfg)
    eager, compiled = (Trainer(tiny_cfg.replace(compile=c), data, torch.device("cpu")) for c in (False, True))
    assert hasattr(compiled.terms, "_torchdynamo_orig_callable") and not hasattr(eager.terms, "_torchdynamo_orig_callable")
    for _ in range(2):
        want, got = eager.run_epoch()[0], compiled.run_epoch()[0]
        assert got == pytest.approx(want, rel=1e-3)


def test_a_swap_with_both_codes_from_one_clip_is_its_reconstruction(tiny_cfg):
    from marl import decode
    from marl.model import MARL

    torch.manual_seed(0)
    model = MARL(tiny_cfg).eval()
    x = torch.randn(3, tiny_cfg.n_mels, tiny_cfg.n_frames)
    assert torch.allclose(decode.swap(model, x, x), decode.reconstruct(model, x))
    y = torch.randn(3, tiny_cfg.n_mels, tiny_cfg.n_frames)
    assert not torch.allclose(decode.swap(model, x, y), decode.reconstruct(model, x))
    data = load_dataset(tiny_cfg)
    a, b = decode.swap_clips(data.test, 4)
    assert len(a) == len(b) == 4
    ta = [int(data.test.factors["timbre"][(data.test.x[:, 0] == clip).all(-1).all(-1), 0][0]) for clip in a]
    tb = [int(data.test.factors["timbre"][(data.test.x[:, 0] == clip).all(-1).all(-1), 0][0]) for clip in b]
    assert all(i != j for i, j in zip(ta, tb))  # B always another timbre

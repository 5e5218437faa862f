"""One configuration object for a MARL run, validated once at the edge.

Every field is a command-line flag of `python -m marl.train` (``--latent-dim`` for
``latent_dim``), a key of a ``--config`` file (JSON or YAML) and a ``config/<key>`` column of
a sweep's results. Defaults marked CHOSEN are ours where the paper is silent
(see ../shared/reference/MARL_SPEC.md and docs/reproduction.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from marl.errors import UserError

ESTIMATORS = ("mss", "mws", "mss_batch", "bank")
LIKELIHOODS = ("sum", "mean", "learned")
ARCHS = ("mlp", "conv")
DEVICES = ("auto", "cpu", "cuda")
PROBE_INPUTS = ("mean", "sample")
SOURCES = ("synth", "soundfont", "nsynth", "folder")
SPLIT_BY = ("note", "instrument")
SCHEDULES = ("constant", "cosine")
CHOICES = {"estimator": ESTIMATORS, "likelihood": LIKELIHOODS, "probe_input": PROBE_INPUTS, "arch": ARCHS,
           "device": DEVICES, "source": SOURCES, "split_by": SPLIT_BY, "schedule": SCHEDULES}
NSYNTH_FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                   "string", "synth_lead", "vocal")
# Melodic GM programs from eight families, all sounding from MIDI 60 to 80 (checked on render):
# Acoustic Grand Piano, Vibraphone, Church Organ, Acoustic Guitar (nylon), Violin, Trumpet,
# Tenor Sax, Flute. (Alto Sax, 65, was the first choice: TimGM6mb has no sound for it at E4.)
PROGRAM_NAMES = {"piano": 0, "vibraphone": 11, "organ": 19, "guitar": 24, "violin": 40, "trumpet": 56,
                 "tenor_sax": 66, "flute": 73}
PATH_FIELDS = ("data_dir", "soundfont")

# Fields that determine the generated data; only these key the on-disk cache.
DATA_FIELDS = (
    "source", "data_dir", "soundfont", "n_train_pairs", "n_test_pairs", "n_val_pairs", "sample_rate", "f_min", "f_max", "n_pitch_classes",
    "n_mels", "n_fft", "hop_length", "n_frames", "amp_min", "amp_max", "data_seed",
    "programs", "velocities", "split_by", "max_notes", "families",
)


@dataclass
class Config:
    # --- objective (paper's equation; α: index-code MI, β: total correlation, γ: dim-wise KL)
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.1  # the paper's favoured ablation point (spec §5)
    # log q(z), log q(z_k) from: minibatch stratified ("mss") or weighted ("mws") sampling with
    # the dataset's N; MSS as if N were the batch ("mss_batch"); or a memory bank of every
    # training example's posterior ("bank", bank_size entries a step). docs/reproduction.md, "Settle γ"
    estimator: str = "mss"
    # bank: entries drawn per step (K). At the log-variance floor −10 the bank reads dim-KL
    # 0.27 nats low at 4096 and 0.15 at 8192 (tests/test_estimators.py); cost grows with K
    bank_size: int = 4096
    # decoder likelihood: "sum" (½Σ squared error over bins), "mean" (mean squared error: the
    # KL terms weigh n_mels·n_frames/2 = 512× more) or "learned" (one learned variance σ², σ-VAE:
    # the KL terms weigh σ² times as much, σ² → the per-bin mean squared error)
    likelihood: str = "sum"
    # --- beyond the paper (marl/losses.py; 0 keeps the paper's objective)
    swap: float = 0.0  # cross-view swap reconstruction: view j from (z_pj, the other view's shared mean)
    infonce: float = 0.0  # InfoNCE on the views' shared means: a pair's views positive, the batch negative
    temperature: float = 0.1  # of the InfoNCE similarities
    orthogonal: float = 0.0  # ‖Cov(private, shared)‖²_F of each view's means
    # --- model
    arch: str = "mlp"  # "mlp" (fast, CPU default) or "conv" (small conv net)
    latent_dim: int = 8  # per subspace, as in the paper's figures
    hidden: int = 256  # width of the hidden layers
    poe_prior: bool = False  # add a N(0, I) expert to the product of experts
    logvar_min: float = -10.0  # soft floor of the posterior log-variances (CHOSEN: keeps γ finite)
    # --- training
    epochs: int = 15
    batch_size: int = 256
    lr: float = 1e-3
    # the learning rate over the run's steps: "constant", or "cosine" (after the warm-up, a half
    # cosine from lr down to 0 at the run's end)
    schedule: str = "constant"
    warmup: float = 0.0  # cosine: the share of the steps over which lr first rises linearly to lr
    seed: int = 0  # model init, batch order and reparameterisation noise
    device: str = "auto"  # CUDA when present
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    amp: bool = False  # bf16 autocast of the encoder/decoder matmuls; the loss math stays fp32
    # torch.compile the training step (CUDA graphs on CUDA). Costs 10-30 s once per trial; steps
    # ran 1.3x faster on a 2-core CPU and 5-7x on an H100 (docs/performance.md): for long runs
    compile: bool = False
    # --- evaluation
    eval_every: int = 0  # evaluate every N epochs during training; 0 = at the end only
    probe_train_clips: int = 4096  # training clips whose latents fit the probes
    probe_input: str = "mean"  # probe the posterior means ("mean") or one posterior sample ("sample")
    umap: bool = True  # UMAP embedding and figure at the end
    # --- data (spec §1); the dataset is a pure function of these fields (and of the files
    # data_dir or soundfont name). Sources (marl/sources.py, marl/soundfont.py): synth (band-limited waveforms),
    # soundfont (GM instruments rendered from a SoundFont), nsynth (NSynth layout), folder
    # (audio files + labels.csv)
    source: str = "synth"
    data_dir: str = ""  # nsynth, folder: the folder to read
    soundfont: str = ""  # soundfont: an .sf2 file; "" = pretty-midi's TimGM6mb.sf2
    # soundfont: GM programs, comma-separated numbers (0-127) or names (pretty-midi's GM names,
    # "Violin", or ours: piano, vibraphone, organ, guitar, violin, trumpet, tenor_sax, flute)
    programs: str = "0,11,19,24,40,56,66,73"
    # soundfont: MIDI velocities rendered per (program, pitch). Five, so that note-disjoint
    # splits keep three for training and hold one out for test and one for val (CHOSEN)
    velocities: str = "48,64,80,96,127"
    # "note": no note in two splits (marl/splits.py); "instrument": no instrument in two, so
    # test instruments are unseen (HEAR's nsynth pitch protocol; timbre is then scored as family).
    # NSynth's own split folders, where data_dir has them, are the splits whatever this says
    split_by: str = "note"
    max_notes: int = 0  # nsynth, folder: at most this many notes (per split folder), a seeded draw; 0 = all
    families: str = ""  # nsynth: keep only these instrument families, comma-separated; "" = all
    n_train_pairs: int = 4096
    n_test_pairs: int = 1024  # held-out pairs every reported figure comes from
    n_val_pairs: int = 1024  # held-out pairs for model and probe selection
    sample_rate: int = 44100  # keeps the 3rd harmonic of f_max below Nyquist (spec §6)
    f_min: float = 200.0
    f_max: float = 6000.0
    n_pitch_classes: int = 21  # synth: log-frequency bins; soundfont: semitones from MIDI 60
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 256
    n_frames: int = 16
    amp_min: float = 0.1
    amp_max: float = 1.0
    data_seed: int = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """Build and validate; unknown keys and wrong types are UserErrors naming the field."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise UserError(f"unknown config field {key!r}")
            kwargs[key] = _coerce(key, value, known[key].type)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    @classmethod
    def from_labelled(cls, values: dict) -> "Config":
        """`from_dict` of a trial's flat config, whose non-field keys (labels such as
        `ablation`) are dropped."""
        known = {f.name for f in fields(cls)}
        return cls.from_dict({k: v for k, v in values.items() if k in known})

    @classmethod
    def from_file(cls, path: str | Path) -> dict:
        """Read a JSON or YAML file of config fields (not yet validated)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise UserError(f"config: cannot read {path}: {err.strerror or err}") from None
        import yaml

        try:
            values = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (ValueError, yaml.YAMLError) as err:  # JSONDecodeError is a ValueError
            raise UserError(f"config: cannot parse {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise UserError(f"config: {path} must hold a mapping of field: value")
        return values

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Config":
        return Config.from_dict({**self.to_dict(), **changes})

    def with_absolute_paths(self) -> "Config":
        """data_dir and soundfont made absolute against this process's working directory: Ray
        runs trials in their own folders, where a relative path would name nothing."""
        return self.replace(**{k: str(Path(getattr(self, k)).expanduser().resolve())
                               for k in PATH_FIELDS if getattr(self, k)})

    def data_dict(self) -> dict:
        return {k: getattr(self, k) for k in DATA_FIELDS}

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        for name in ("alpha", "beta", "gamma", "swap", "infonce", "orthogonal"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise UserError(f"{name}: must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.logvar_min) and -40 <= self.logvar_min <= 0):
            # exp(−logvar) must stay far from fp32's overflow at e^88 in the log-densities
            raise UserError(f"logvar_min: must be between -40 and 0, got {self.logvar_min}")
        for name in ("lr", "f_min", "f_max", "amp_min", "amp_max", "temperature"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"{name}: must be a finite number > 0, got {value}")
        for name in ("latent_dim", "hidden", "epochs", "n_train_pairs", "n_test_pairs", "n_val_pairs",
                     "sample_rate", "n_pitch_classes", "n_mels", "n_fft", "hop_length",
                     "n_frames", "probe_train_clips", "bank_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("threads", "eval_every", "max_notes"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise UserError(f"{name}: must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not 0 <= self.warmup < 1 or (self.warmup and self.schedule == "constant"):
            raise UserError(f"warmup: a share of the steps, 0 <= warmup < 1, with schedule cosine; got {self.warmup}")
        if not 2 <= self.batch_size <= self.n_train_pairs:
            raise UserError(f"batch_size: must be between 2 and n_train_pairs "
                            f"({self.n_train_pairs}), got {self.batch_size}")
        if self.n_pitch_classes < 2:
            raise UserError("n_pitch_classes: must be >= 2 (pairs need two different classes)")
        if self.f_min >= self.f_max:
            raise UserError(f"f_max: must exceed f_min ({self.f_min}), got {self.f_max}")
        if self.source in ("nsynth", "folder") and not self.data_dir:
            raise UserError(f"data_dir: source {self.source!r} reads a folder; give --data-dir PATH")
        if self.source == "soundfont" and self.n_pitch_classes > 21:
            raise UserError("n_pitch_classes: the soundfont source plays MIDI 60-80, where every "
                            f"default instrument sounds: at most 21, got {self.n_pitch_classes}")
        if self.source == "synth" and 3 * self.f_max >= self.sample_rate / 2:
            raise UserError(f"f_max: its 3rd harmonic ({3 * self.f_max:g} Hz) must stay below "
                            f"Nyquist ({self.sample_rate / 2:g} Hz) or timbres become "
                            "indistinguishable; lower f_max or raise sample_rate")
        if self.split_by == "instrument" and self.source == "synth":
            raise UserError("split_by: 'instrument' needs real instruments (source soundfont, nsynth "
                            "or folder); the synthetic source has four waveforms")
        parse_programs(self.programs)
        parse_velocities(self.velocities)
        unknown = set(parse_list(self.families)) - set(NSYNTH_FAMILIES)
        if unknown:
            raise UserError(f"families: unknown NSynth family {sorted(unknown)[0]!r} "
                            f"(one of {', '.join(NSYNTH_FAMILIES)})")
        if self.amp_min > self.amp_max:
            raise UserError(f"amp_max: must be >= amp_min ({self.amp_min}), got {self.amp_max}")
        if self.arch == "conv" and (self.n_mels % 8 or self.n_frames % 8):
            raise UserError("arch: 'conv' needs n_mels and n_frames divisible by 8")


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_programs(text: str) -> tuple[int, ...]:
    """GM program numbers from "0, Violin, flute": numbers, pretty-midi's GM names or ours."""
    out = []
    for item in parse_list(text):
        if item.isdigit() and int(item) < 128:
            out.append(int(item))
        elif item.lower() in PROGRAM_NAMES:
            out.append(PROGRAM_NAMES[item.lower()])
        else:
            import pretty_midi

            gm = {name.lower(): i for i, name in enumerate(pretty_midi.constants.INSTRUMENT_MAP)}
            if item.lower() not in gm:
                raise UserError(f"programs: {item!r} is neither a GM program number (0-127) nor a GM "
                                "name (e.g. 'Violin', 'Acoustic Grand Piano')")
            out.append(gm[item.lower()])
    if len(out) < 1 or len(set(out)) != len(out):
        raise UserError(f"programs: need one or more distinct GM programs, got {text!r}")
    return tuple(out)


def parse_velocities(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in parse_list(text))
    except ValueError:
        raise UserError(f"velocities: comma-separated MIDI velocities 1-127, got {text!r}") from None
    if not out or len(set(out)) != len(out) or not all(1 <= v <= 127 for v in out):
        raise UserError(f"velocities: distinct MIDI velocities 1-127, got {text!r}")
    return out


def _coerce(key: str, value, type_name: str):
    """Convert a value from JSON/YAML/command line to the field's type, or fail naming it."""
    try:
        if type_name == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if type_name == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if type_name == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError):
        raise UserError(f"{key}: expected {type_name}, got {value!r}") from None

"""Real-instrument data sources: notes from a SoundFont, an NSynth folder or a labelled folder.

Each source gives a *note bank* — mono waveforms at the config's sample rate with their labels —
and `pair_split` draws pairs from it as the synthetic source does: the two clips of a pair
share the instrument (the `timbre` factor) and differ in pitch (`pitch_class`). A clip is
`n_frames` STFT frames cut from a note at a random offset between ONSET_SKIP and OFFSET_MAX
seconds (past the attack, inside the sustain). No note feeds two splits (marl/splits.py:
`split_by` note or instrument), so test clips come from notes training never heard.

- soundfont: the GM programs of `cfg.programs` at MIDI pitches 60 … 60 + n_pitch_classes − 1
  and the velocities of `cfg.velocities`, each rendered once (midirenderer, 48 kHz, 1 s held)
  from `cfg.soundfont`, by default the TimGM6mb.sf2 that pretty-midi ships. A note that renders
  silent beside the font's own level (QUIET_DB below its median note) or clipped is skipped and
  counted; only a (program, pitch) with no usable velocity left is an error.
- nsynth: `data_dir/examples.json` and `data_dir/audio/<note>.wav`, NSynth's layout; or NSynth's
  own splits, `data_dir/nsynth-{train,valid,test}/`, used as the splits.
- folder: `data_dir/labels.csv` with columns file, timbre (or instrument) and pitch; the files
  are any audio soundfile reads (WAV, FLAC, OGG, MP3), paths relative to data_dir.

`python -m marl.sources export-nsynth OUT` writes soundfont notes in NSynth's layout (a fixture
for the nsynth source, and a way to hand them to other tools), `--splits` in NSynth's three
split folders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from marl import splits
from marl.config import (NSYNTH_FAMILIES, PROGRAM_NAMES, Config, parse_list, parse_programs,
                         parse_velocities)
from marl.errors import UserError, exit_on_user_error

PROGRAMS = tuple(PROGRAM_NAMES.values())  # the default programs, named by PROGRAM_NAMES
LOWEST_PITCH = 60
NOTE_SECONDS = 1.0
ONSET_SKIP, OFFSET_MAX = 0.05, 0.6  # seconds: where clips may start inside a note
# A note is unusable this far below the font's median note level (RMS past the onset), or when
# all zeros. Each log-mel is floored 80 dB below its own peak and normalised anyway, so a quiet
# note is still an example: FluidR3_GM's vibraphone at MIDI 80, velocity 64, sits ~30 dB below.
QUIET_DB = 60.0
CLIP_PEAK = 0.999
GM_TO_NSYNTH_FAMILY = {0: "keyboard", 1: "mallet", 2: "organ", 3: "guitar", 4: "string", 5: "string",
                       7: "brass", 8: "reed", 9: "flute"}  # GM family (program // 8) -> NSynth's


@dataclass
class NoteBank:
    """Notes as mono waveforms (one tensor each, at the config's sample rate) and their labels:
    `timbre` and `pitch_class` (class indices), plus other factors, each (n_notes,). `split`:
    each note's split id (marl.splits.SPLIT_IDS) where the data fix it (NSynth's own folders);
    `midi`: the MIDI pitch of each pitch class; `skipped`: notes left out, and why."""

    waves: list[torch.Tensor]
    factors: dict[str, torch.Tensor]
    n_classes: dict[str, int]
    midi: list[int]
    split: torch.Tensor | None = None
    skipped: tuple[str, ...] = ()

    def subset(self, keep: torch.Tensor) -> "NoteBank":
        index = keep.nonzero().squeeze(1)
        return NoteBank([self.waves[i] for i in index.tolist()], {k: v[index] for k, v in self.factors.items()},
                        self.n_classes, self.midi, None if self.split is None else self.split[index], self.skipped)


# ---------------------------------------------------------------- audio
def _mono(data, rate: int, sample_rate: int) -> torch.Tensor:
    """soundfile's (samples, channels) array -> mono float32 at sample_rate."""
    import torchaudio

    wave = torch.from_numpy(data).mean(1)
    return torchaudio.functional.resample(wave, rate, sample_rate) if rate != sample_rate else wave


def _unreadable(path, err: Exception) -> UserError:
    return UserError(f"{path}: not readable audio ({str(err).splitlines()[0][:120]})")


def read_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Any file soundfile reads, mixed to mono and resampled: (n_samples,) float32."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as err:  # soundfile.LibsndfileError is a RuntimeError
        raise _unreadable(path, err) from None
    return _mono(data, rate, sample_rate)


def check_audio(paths: list[Path]) -> None:
    """Fail in one line, before any work, on a missing or unreadable audio file (header only)."""
    import soundfile

    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such audio file")
        try:
            soundfile.info(str(path))
        except (OSError, RuntimeError) as err:
            raise _unreadable(path, err) from None


def decode_wav(data: bytes, sample_rate: int) -> torch.Tensor:
    import soundfile

    return _mono(*soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True), sample_rate)


# ---------------------------------------------------------------- soundfont
def default_soundfont() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def soundfont_path(cfg: Config) -> Path:
    path = Path(cfg.soundfont) if cfg.soundfont else default_soundfont()
    if not path.is_file():
        raise UserError(f"soundfont: no such file {path}")
    return path


def note_midi(program: int, pitch: int, velocity: int, seconds: float = NOTE_SECONDS) -> bytes:
    """A one-note MIDI file: the program, then the note held for `seconds`."""
    import mido

    song = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks a second
    track = mido.MidiTrack()
    song.tracks.append(track)
    track.append(mido.Message("program_change", program=program, channel=0, time=0))
    track.append(mido.Message("note_on", note=pitch, velocity=velocity, channel=0, time=0))
    track.append(mido.Message("note_off", note=pitch, velocity=0, channel=0, time=round(960 * seconds)))
    out = io.BytesIO()
    song.save(file=out)
    return out.getvalue()


def program_names(programs: tuple[int, ...]) -> tuple[str, ...]:
    """Ours where we have one (piano, violin, …), else pretty-midi's GM name."""
    import pretty_midi

    ours = {v: k for k, v in PROGRAM_NAMES.items()}
    return tuple(ours.get(p, pretty_midi.program_to_instrument_name(p)) for p in programs)


def render_note(font: bytes, program: int, pitch: int, velocity: int, sample_rate: int) -> torch.Tensor:
    import midirenderer

    return decode_wav(midirenderer.render_wave_from(font, note_midi(program, pitch, velocity)), sample_rate)


def note_problems(rms: torch.Tensor, peak: torch.Tensor) -> list[str]:
    """Why each note is unusable ("silent", "clipped") or "" when it is usable: silent is all
    zeros or QUIET_DB below the median RMS of the font's non-zero notes."""
    audible = rms[peak > 0]
    floor = float(audible.median()) * 10 ** (-QUIET_DB / 20) if audible.numel() else float("inf")
    return ["silent" if p == 0 or r < floor else "clipped" if p >= CLIP_PEAK else ""
            for r, p in zip(rms.tolist(), peak.tolist())]


def soundfont_bank(cfg: Config, progress: bool = True) -> NoteBank:
    from tqdm import tqdm

    font = soundfont_path(cfg).read_bytes()
    programs, velocities = parse_programs(cfg.programs), parse_velocities(cfg.velocities)
    notes = [(i, p, v) for i in range(len(programs)) for p in range(cfg.n_pitch_classes) for v in velocities]
    waves = [render_note(font, programs[i], LOWEST_PITCH + p, v, cfg.sample_rate)
             for i, p, v in tqdm(notes, desc="render", unit="note", disable=not progress, leave=False)]
    skip = int(ONSET_SKIP * cfg.sample_rate)
    problems = note_problems(torch.stack([w[skip:].pow(2).mean().sqrt() for w in waves]),
                             torch.stack([w.abs().max() for w in waves]))
    skipped = tuple(f"program {programs[i]} pitch {LOWEST_PITCH + p} velocity {v}: {why}"
                    for (i, p, v), why in zip(notes, problems) if why)
    kept = {(i, p) for (i, p, _), why in zip(notes, problems) if not why}
    for i, p in ((i, p) for i in range(len(programs)) for p in range(cfg.n_pitch_classes)):
        if (i, p) not in kept:
            raise UserError(f"soundfont: program {programs[i]} renders no usable note at pitch "
                            f"{LOWEST_PITCH + p} (velocities {cfg.velocities}); drop it from programs")
    notes, waves = zip(*[(n, w) for n, w, why in zip(notes, waves, problems) if not why])
    col = lambda k: torch.tensor([n[k] for n in notes])  # noqa: E731
    timbre, pitch_class = col(0), col(1)
    return NoteBank(list(waves), {"timbre": timbre, "pitch_class": pitch_class,
                                  "family": torch.tensor([programs[i] // 8 for i, _, _ in notes]),
                                  "pitch": pitch_class + LOWEST_PITCH, "velocity": col(2)},
                    {"timbre": len(programs), "pitch": cfg.n_pitch_classes},
                    [LOWEST_PITCH + p for p in range(cfg.n_pitch_classes)], skipped=skipped)


# ---------------------------------------------------------------- nsynth and folder
def data_folder(cfg: Config) -> Path:
    folder = Path(cfg.data_dir)
    if not folder.is_dir():
        raise UserError(f"data_dir: no such folder {folder}")
    return folder


def labelled_bank(waves: list[torch.Tensor], timbres: list, pitches: list[int], extra: dict,
                  split: list[int] | None = None) -> NoteBank:
    """Class indices from raw labels (sorted distinct values), checked for pairs."""
    t_values, p_values = sorted(set(timbres)), sorted(set(pitches))
    timbre = torch.tensor([t_values.index(t) for t in timbres])
    pitch_class = torch.tensor([p_values.index(p) for p in pitches])
    if not any(pitch_class[timbre == t].unique().numel() >= 2 for t in range(len(t_values))):
        raise UserError(f"too few notes to form pairs: {len(waves)} notes, and no instrument has "
                        "two different pitches")
    return NoteBank(waves, {"timbre": timbre, "pitch_class": pitch_class, "pitch": torch.tensor(pitches),
                            **{k: torch.tensor(v) for k, v in extra.items()}},
                    {"timbre": len(t_values), "pitch": len(p_values)}, list(p_values),
                    None if split is None else torch.tensor(split))


def draw(items: list, cfg: Config) -> list:
    """At most cfg.max_notes of items (0: all), a draw seeded by data_seed, in their order."""
    if not cfg.max_notes or len(items) <= cfg.max_notes:
        return items
    keep = torch.randperm(len(items), generator=torch.Generator().manual_seed(cfg.data_seed))[:cfg.max_notes]
    return [items[i] for i in sorted(keep.tolist())]


# NSynth's own split folders, and the split each one is
NSYNTH_SPLITS = {"nsynth-train": "train", "nsynth-valid": "val", "nsynth-test": "test"}


def nsynth_notes(folder: Path, cfg: Config) -> list[tuple]:
    """(wav path, instrument, pitch, velocity, family) of the notes of one NSynth folder, after
    the `families` filter and the `max_notes` draw."""
    index = folder / "examples.json"
    try:
        examples = json.loads(index.read_text())
        notes = [(folder / "audio" / f"{name}.wav", str(e.get("instrument_str", e["instrument"])), int(e["pitch"]),
                  int(e["velocity"]), int(e["instrument_family"])) for name, e in sorted(examples.items())]
    except FileNotFoundError:
        raise UserError(f"data_dir: {index} does not exist (NSynth layout: examples.json + audio/)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{index}: not NSynth's examples.json ({type(err).__name__}: {err})") from None
    families = {NSYNTH_FAMILIES.index(f) for f in parse_list(cfg.families)}
    if families:
        notes = [n for n in notes if n[4] in families]
        if not notes:
            raise UserError(f"families: {folder} has no note of {cfg.families}")
    return draw(notes, cfg)


def nsynth_bank(cfg: Config) -> NoteBank:
    folder = data_folder(cfg)
    present = [name for name in NSYNTH_SPLITS if (folder / name).is_dir()]
    if present and len(present) < len(NSYNTH_SPLITS):
        missing = ", ".join(name for name in NSYNTH_SPLITS if name not in present)
        raise UserError(f"data_dir: {folder} holds {', '.join(present)} but not {missing}: "
                        "NSynth's own splits need all three folders")
    if present:
        parts = [(splits.SPLIT_IDS[split], nsynth_notes(folder / name, cfg)) for name, split in NSYNTH_SPLITS.items()]
    else:
        parts = [(None, nsynth_notes(folder, cfg))]
    notes = [n for _, part in parts for n in part]
    check_audio([n[0] for n in notes])
    waves = [read_audio(n[0], cfg.sample_rate) for n in notes]
    split = [i for i, part in parts for _ in part] if present else None
    return labelled_bank(waves, [n[1] for n in notes], [n[2] for n in notes],
                         {"velocity": [n[3] for n in notes], "family": [n[4] for n in notes]}, split)


def folder_bank(cfg: Config) -> NoteBank:
    folder = data_folder(cfg)
    table = folder / "labels.csv"
    if not table.is_file():
        raise UserError(f"data_dir: {table} does not exist (columns: file, timbre or instrument, pitch)")
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    timbre_key = "timbre" if "timbre" in columns else "instrument"
    missing = {"file", timbre_key, "pitch"} - columns
    if missing:
        raise UserError(f"{table}: missing column(s) {', '.join(sorted(missing))} "
                        "(needs file, timbre or instrument, pitch)")
    try:
        pitches = [int(float(r["pitch"])) for r in rows]
    except ValueError as err:
        raise UserError(f"{table}: pitch must be a number ({err})") from None
    rows, pitches = zip(*draw(list(zip(rows, pitches)), cfg))
    files = [folder / r["file"] for r in rows]
    check_audio(files)
    waves = [read_audio(f, cfg.sample_rate) for f in files]
    return labelled_bank(waves, [r[timbre_key] for r in rows], list(pitches), {})


def note_bank(cfg: Config) -> NoteBank:
    return {"soundfont": soundfont_bank, "nsynth": nsynth_bank, "folder": folder_bank}[cfg.source](cfg)


def fingerprint(cfg: Config) -> str:
    """What the files behind a source look like (names, sizes, times): part of the cache key, so
    a changed folder or font is not served from an old cache."""
    if cfg.source == "soundfont":
        files = [soundfont_path(cfg)]
    elif cfg.source in ("nsynth", "folder"):
        files = sorted(p for p in data_folder(cfg).rglob("*") if p.is_file())
    else:
        return ""
    listing = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- pairs
def pair_split(bank: NoteBank, n_pairs: int, cfg: Config, gen: torch.Generator,
               name: str = "train") -> tuple[torch.Tensor, dict]:
    """n pairs of log-mel clips (n, 2, n_mels, n_frames) and their factors, each (n, 2), from
    the notes of one split."""
    from marl.data import log_mel, n_samples_for

    timbre, pitch = bank.factors["timbre"], bank.factors["pitch_class"]
    usable = [t for t in range(bank.n_classes["timbre"]) if pitch[timbre == t].unique().numel() >= 2]
    if not usable:
        raise UserError(f"{name} split: none of its {len(bank.waves)} notes' instruments has two "
                        f"different pitches, so no pair can be drawn (split_by {cfg.split_by}: "
                        "marl/splits.py); give more notes per instrument")
    by_timbre = {t: (timbre == t).nonzero().squeeze(1) for t in usable}
    length = n_samples_for(cfg)
    picks = torch.randint(len(usable), (n_pairs,), generator=gen).tolist()
    first = torch.rand(n_pairs, generator=gen).tolist()
    second = torch.rand(n_pairs, generator=gen).tolist()
    notes = []
    for t, u1, u2 in zip(picks, first, second):
        members = by_timbre[usable[t]]
        a = int(members[int(u1 * len(members))])
        others = members[pitch[members] != pitch[a]]
        notes.append((a, int(others[int(u2 * len(others))])))
    notes_t = torch.tensor(notes)  # (n, 2) note indices
    starts = torch.rand(n_pairs, 2, generator=gen, dtype=torch.float64)
    clips, offsets = torch.zeros(n_pairs * 2, length), torch.zeros(n_pairs, 2, dtype=torch.float64)
    for row, (note, u) in enumerate(zip(notes_t.reshape(-1).tolist(), starts.reshape(-1).tolist())):
        wave = bank.waves[note]
        lo = int(ONSET_SKIP * cfg.sample_rate)
        hi = max(lo, min(int(OFFSET_MAX * cfg.sample_rate), wave.numel() - length))
        start = lo + int(u * (hi - lo))
        piece = wave[start:start + length]
        clips[row, :piece.numel()] = piece
        offsets.view(-1)[row] = start / cfg.sample_rate
    spec = log_mel(clips, cfg).reshape(n_pairs, 2, cfg.n_mels, cfg.n_frames)
    factors = {k: v[notes_t] for k, v in bank.factors.items()}
    factors["offset"] = offsets
    return spec, factors


# ---------------------------------------------------------------- export
def export_nsynth(out: Path, cfg: Config, pitches: int = 3, programs: tuple[int, ...] = PROGRAMS[:3],
                  velocities: tuple[int, ...] = (100,), official_splits: bool = False) -> int:
    """Soundfont notes in NSynth's layout (16 kHz, 4 s like NSynth): `programs` at `pitches`
    pitches from MIDI 60, each at `velocities`. With official_splits, NSynth's three folders,
    instruments dealt between them as NSynth does (none in two; marl.splits.deal by family).
    Returns the number of notes."""
    import soundfile

    font = soundfont_path(cfg).read_bytes()
    family = [GM_TO_NSYNTH_FAMILY.get(p // 8, "synth_lead") for p in programs]
    where = [""] * len(programs)
    if official_splits:
        ids = splits.deal(family, torch.Generator().manual_seed(cfg.data_seed)).tolist()
        names = {v: k for k, v in NSYNTH_SPLITS.items()}
        where = [names[{0: "train", 1: "test", 2: "val"}[i]] for i in ids]
    examples: dict[str, dict] = {name: {} for name in set(where)}
    for i, program in enumerate(programs):
        folder = out / where[i]
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        instrument = f"{family[i]}_synthetic_{i:03d}"
        for pitch in range(LOWEST_PITCH, LOWEST_PITCH + pitches):
            for velocity in velocities:
                name = f"{instrument}-{pitch:03d}-{velocity:03d}"
                wave = render_note(font, program, pitch, velocity, 16000)
                soundfile.write(str(folder / "audio" / f"{name}.wav"), torch.nn.functional.pad(
                    wave, (0, max(0, 64000 - wave.numel())))[:64000].numpy(), 16000)
                examples[where[i]][name] = {
                    "note_str": name, "instrument": i, "instrument_str": instrument,
                    "instrument_family": NSYNTH_FAMILIES.index(family[i]), "instrument_family_str": family[i],
                    "instrument_source": 2, "instrument_source_str": "synthetic", "pitch": pitch,
                    "velocity": velocity, "sample_rate": 16000, "qualities": [0] * 10, "qualities_str": []}
    for name, notes in examples.items():
        (out / name / "audio").mkdir(parents=True, exist_ok=True)
        (out / name / "examples.json").write_text(json.dumps(notes, indent=2))
    return sum(len(notes) for notes in examples.values())


def main(argv=None) -> None:
    from marl.cli import ArgumentParser

    p = ArgumentParser(prog="python -m marl.sources", description="Data-source tools.")
    sub = p.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export-nsynth", help="write soundfont notes in NSynth's layout")
    exp.add_argument("out", help="folder to write examples.json and audio/ into")
    exp.add_argument("--programs", default=",".join(map(str, PROGRAMS[:3])),
                     help="GM programs, numbers or names, comma-separated (default: %(default)s)")
    exp.add_argument("--pitches", type=int, default=3, help="pitches from MIDI 60 (default: 3)")
    exp.add_argument("--velocities", default="100", help="MIDI velocities, comma-separated (default: 100)")
    exp.add_argument("--splits", action="store_true",
                     help="write NSynth's nsynth-train/, nsynth-valid/ and nsynth-test/, no instrument in two")
    exp.add_argument("--soundfont", default="", help="an .sf2 file (default: pretty-midi's)")
    args = p.parse_args(argv)
    if not 1 <= args.pitches <= 21:
        raise UserError(f"--pitches: 1 to 21, got {args.pitches}")
    programs, velocities = parse_programs(args.programs), parse_velocities(args.velocities)
    if args.splits and len(programs) < 3:
        raise UserError("--splits: needs 3 or more programs (one instrument per split at least)")
    from marl.files import check_writable

    out = Path(args.out)
    check_writable(out, "out")
    n = export_nsynth(out, Config.from_dict({"soundfont": args.soundfont}), args.pitches, programs,
                      velocities, args.splits)
    layout = "nsynth-{train,valid,test}/" if args.splits else "examples.json, audio/"
    print(f"{n} notes in NSynth's layout: {out}/ ({layout})")


if __name__ == "__main__":
    exit_on_user_error(main)

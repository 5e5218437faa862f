"""Real-instrument data sources: notes from a SoundFont, an NSynth folder or a labelled folder.

Each source gives a *note bank* — mono waveforms at the config's sample rate with their labels —
and `pair_split` draws pairs from it as the synthetic source does: the two clips of a pair
share the instrument (the `timbre` factor) and differ in pitch (`pitch_class`). A clip is
`n_frames` STFT frames cut from a note at a random offset between ONSET_SKIP and OFFSET_MAX
seconds (past the attack, inside the sustain). Splits draw from the same notes at other offsets
and pairings: test clips are new cuts of known notes, not unseen notes.

- soundfont: the General MIDI programs in PROGRAMS at MIDI pitches 60 … 60 + n_pitch_classes − 1
  and the velocities in VELOCITIES, each rendered once (midirenderer, 48 kHz, 1 s held) from
  `cfg.soundfont`, by default the TimGM6mb.sf2 that pretty-midi ships. Every render is checked:
  a silent or clipped note is an error, not a training example.
- nsynth: `data_dir/examples.json` and `data_dir/audio/<note>.wav`, NSynth's layout.
- folder: `data_dir/labels.csv` with columns file, timbre (or instrument) and pitch; the files
  are any audio soundfile reads (WAV, FLAC, OGG, MP3), paths relative to data_dir.

`python -m marl.sources export-nsynth OUT` writes soundfont notes in NSynth's layout (a fixture
for the nsynth source, and a way to hand them to other tools).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from marl.config import Config
from marl.errors import UserError, exit_on_user_error

# Melodic GM programs from eight families, all sounding from MIDI 60 to 80 at every velocity
# (checked on render): Acoustic Grand Piano, Vibraphone, Church Organ, Acoustic Guitar (nylon),
# Violin, Trumpet, Tenor Sax, Flute. (Alto Sax, 65, was the first choice: TimGM6mb has no
# sound for it at E4, MIDI 64, which the render check caught.)
PROGRAMS = (0, 11, 19, 24, 40, 56, 66, 73)
PROGRAM_NAMES = ("piano", "vibraphone", "organ", "guitar", "violin", "trumpet", "tenor_sax", "flute")
LOWEST_PITCH = 60
VELOCITIES = (64, 96, 127)
NOTE_SECONDS = 1.0
RENDER_RATE = 48000
ONSET_SKIP, OFFSET_MAX = 0.05, 0.6  # seconds: where clips may start inside a note
SILENT_RMS, CLIP_PEAK = 1e-3, 0.999
NSYNTH_FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                   "string", "synth_lead", "vocal")
GM_TO_NSYNTH_FAMILY = {0: "keyboard", 1: "mallet", 2: "organ", 3: "guitar", 4: "string", 5: "string",
                       7: "brass", 8: "reed", 9: "flute"}  # GM family (program // 8) -> NSynth's


@dataclass
class NoteBank:
    """Notes as mono waveforms (one tensor each, at the config's sample rate) and their labels:
    `timbre` and `pitch_class` (class indices), plus other factors, each (n_notes,)."""

    waves: list[torch.Tensor]
    factors: dict[str, torch.Tensor]
    n_classes: dict[str, int]


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


def render_note(font: bytes, program: int, pitch: int, velocity: int, sample_rate: int) -> torch.Tensor:
    import midirenderer

    wave = decode_wav(midirenderer.render_wave_from(font, note_midi(program, pitch, velocity)), sample_rate)
    rms = float(wave[int(ONSET_SKIP * sample_rate):].pow(2).mean().sqrt())
    if rms < SILENT_RMS or float(wave.abs().max()) >= CLIP_PEAK:
        raise UserError(f"soundfont: program {program}, pitch {pitch}, velocity {velocity} renders "
                        f"{'silent' if rms < SILENT_RMS else 'clipped'}; choose another font")
    return wave


def soundfont_bank(cfg: Config, progress: bool = True) -> NoteBank:
    from tqdm import tqdm

    font = soundfont_path(cfg).read_bytes()
    notes = [(i, p, v) for i in range(len(PROGRAMS)) for p in range(cfg.n_pitch_classes) for v in VELOCITIES]
    waves = [render_note(font, PROGRAMS[i], LOWEST_PITCH + p, v, cfg.sample_rate)
             for i, p, v in tqdm(notes, desc="render", unit="note", disable=not progress, leave=False)]
    col = lambda k: torch.tensor([n[k] for n in notes])  # noqa: E731
    timbre, pitch_class = col(0), col(1)
    return NoteBank(waves, {"timbre": timbre, "pitch_class": pitch_class,
                            "family": torch.tensor([PROGRAMS[i] // 8 for i, _, _ in notes]),
                            "pitch": pitch_class + LOWEST_PITCH, "velocity": col(2)},
                    {"timbre": len(PROGRAMS), "pitch": cfg.n_pitch_classes})


# ---------------------------------------------------------------- nsynth and folder
def data_folder(cfg: Config) -> Path:
    folder = Path(cfg.data_dir)
    if not folder.is_dir():
        raise UserError(f"data_dir: no such folder {folder}")
    return folder


def labelled_bank(waves: list[torch.Tensor], timbres: list, pitches: list[int], extra: dict) -> NoteBank:
    """Class indices from raw labels (sorted distinct values), checked for pairs."""
    t_values, p_values = sorted(set(timbres)), sorted(set(pitches))
    timbre = torch.tensor([t_values.index(t) for t in timbres])
    pitch_class = torch.tensor([p_values.index(p) for p in pitches])
    if not any(pitch_class[timbre == t].unique().numel() >= 2 for t in range(len(t_values))):
        raise UserError(f"too few notes to form pairs: {len(waves)} notes, and no instrument has "
                        "two different pitches")
    return NoteBank(waves, {"timbre": timbre, "pitch_class": pitch_class, "pitch": torch.tensor(pitches),
                            **{k: torch.tensor(v) for k, v in extra.items()}},
                    {"timbre": len(t_values), "pitch": len(p_values)})


def nsynth_bank(cfg: Config) -> NoteBank:
    folder = data_folder(cfg)
    index = folder / "examples.json"
    try:
        examples = json.loads(index.read_text())
        notes = sorted(examples.items())
        labels = [(e["instrument"], int(e["pitch"]), int(e["velocity"]), int(e["instrument_family"]))
                  for _, e in notes]
    except FileNotFoundError:
        raise UserError(f"data_dir: {index} does not exist (NSynth layout: examples.json + audio/)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{index}: not NSynth's examples.json ({type(err).__name__}: {err})") from None
    files = [folder / "audio" / f"{name}.wav" for name, _ in notes]
    check_audio(files)
    waves = [read_audio(f, cfg.sample_rate) for f in files]
    return labelled_bank(waves, [lab[0] for lab in labels], [lab[1] for lab in labels],
                         {"velocity": [lab[2] for lab in labels], "family": [lab[3] for lab in labels]})


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
    files = [folder / r["file"] for r in rows]
    check_audio(files)
    waves = [read_audio(f, cfg.sample_rate) for f in files]
    return labelled_bank(waves, [r[timbre_key] for r in rows], pitches, {})


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
def pair_split(bank: NoteBank, n_pairs: int, cfg: Config, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """n pairs of log-mel clips (n, 2, n_mels, n_frames) and their factors, each (n, 2)."""
    from marl.data import log_mel, n_samples_for

    timbre, pitch = bank.factors["timbre"], bank.factors["pitch_class"]
    usable = [t for t in range(bank.n_classes["timbre"]) if pitch[timbre == t].unique().numel() >= 2]
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
def export_nsynth(out: Path, cfg: Config, pitches: int = 3, programs: int = 3) -> int:
    """Soundfont notes in NSynth's layout (16 kHz, 4 s like NSynth): the first `programs` of
    PROGRAMS at `pitches` pitches from MIDI 60, velocity 100. Returns the number of notes."""
    import soundfile

    font = soundfont_path(cfg).read_bytes()
    (out / "audio").mkdir(parents=True, exist_ok=True)
    examples = {}
    for i, program in enumerate(PROGRAMS[:programs]):
        family = GM_TO_NSYNTH_FAMILY.get(program // 8, "synth_lead")
        for pitch in range(LOWEST_PITCH, LOWEST_PITCH + pitches):
            name = f"{family}_synthetic_{i:03d}-{pitch:03d}-100"
            wave = render_note(font, program, pitch, 100, 16000)
            soundfile.write(str(out / "audio" / f"{name}.wav"), torch.nn.functional.pad(
                wave, (0, max(0, 64000 - wave.numel())))[:64000].numpy(), 16000)
            examples[name] = {"note_str": name, "instrument": i, "instrument_str": f"{family}_synthetic_{i:03d}",
                              "instrument_family": NSYNTH_FAMILIES.index(family), "instrument_family_str": family,
                              "instrument_source": 2, "instrument_source_str": "synthetic",
                              "pitch": pitch, "velocity": 100, "sample_rate": 16000, "qualities": [0] * 10,
                              "qualities_str": []}
    (out / "examples.json").write_text(json.dumps(examples, indent=2))
    return len(examples)


def main(argv=None) -> None:
    from marl.cli import ArgumentParser

    p = ArgumentParser(prog="python -m marl.sources", description="Data-source tools.")
    sub = p.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export-nsynth", help="write soundfont notes in NSynth's layout")
    exp.add_argument("out", help="folder to write examples.json and audio/ into")
    exp.add_argument("--programs", type=int, default=3, help=f"how many of {PROGRAMS} (default: 3)")
    exp.add_argument("--pitches", type=int, default=3, help="pitches from MIDI 60 (default: 3)")
    exp.add_argument("--soundfont", default="", help="an .sf2 file (default: pretty-midi's)")
    args = p.parse_args(argv)
    if not (1 <= args.programs <= len(PROGRAMS) and 1 <= args.pitches <= 21):
        raise UserError(f"--programs: 1 to {len(PROGRAMS)}; --pitches: 1 to 21")
    from marl.files import check_writable

    out = Path(args.out)
    check_writable(out, "out")
    n = export_nsynth(out, Config.from_dict({"soundfont": args.soundfont}), args.pitches, args.programs)
    print(f"{n} notes in NSynth's layout: {out}/examples.json, {out}/audio/")


if __name__ == "__main__":
    exit_on_user_error(main)

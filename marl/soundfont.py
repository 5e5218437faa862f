"""General MIDI notes rendered from a SoundFont (midirenderer), checked against the font's own
level, and exported in NSynth's layout.

Each (program, pitch, velocity) is rendered once, 1 s held, at the config's sample rate. A note
that renders silent beside the font's own level (QUIET_DB below its median note, or all zeros)
or clipped is skipped and counted; only a (program, pitch) with no usable velocity left is an
error, so any GM font works (FluidR3_GM, Debian's default, included).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from marl import splits
from marl.config import NSYNTH_FAMILIES, PROGRAM_NAMES, Config, parse_programs, parse_velocities
from marl.errors import UserError
from marl.notes import NSYNTH_SPLITS, ONSET_SKIP, NoteBank, decode_wav

PROGRAMS = tuple(PROGRAM_NAMES.values())  # the default programs, named by PROGRAM_NAMES
LOWEST_PITCH = 60
NOTE_SECONDS = 1.0
# A note is unusable this far below the font's median note level (RMS past the onset), or when
# all zeros. Each log-mel is floored 80 dB below its own peak and normalised anyway, so a quiet
# note is still an example: FluidR3_GM's vibraphone at MIDI 80, velocity 64, sits ~30 dB below.
QUIET_DB = 60.0
CLIP_PEAK = 0.999
# GM family (program // 8) -> NSynth's; the rest (synth pads, effects, ethnic, percussive) -> synth_lead
GM_TO_NSYNTH_FAMILY = {0: "keyboard", 1: "mallet", 2: "organ", 3: "guitar", 4: "bass", 5: "string",
                       6: "string", 7: "brass", 8: "reed", 9: "flute", 10: "synth_lead"}


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
                    [LOWEST_PITCH + p for p in range(cfg.n_pitch_classes)], skipped=skipped,
                    timbre_names=program_names(programs))


def export_nsynth(out: Path, cfg: Config, pitches: int = 3, programs: tuple[int, ...] = PROGRAMS[:3],
                  velocities: tuple[int, ...] = (100,), official_splits: bool = False) -> tuple[int, tuple[str, ...]]:
    """Soundfont notes in NSynth's layout (16 kHz, 4 s like NSynth): `programs` at `pitches`
    pitches from MIDI 60, each at `velocities`. With official_splits, NSynth's three folders,
    instruments dealt between them as NSynth does (none in two; marl.splits.deal by family).
    Notes that render silent or clipped (`note_problems`) are left out. Returns the number of
    notes written and the ones left out."""
    import soundfile

    font = soundfont_path(cfg).read_bytes()
    family = [GM_TO_NSYNTH_FAMILY.get(p // 8, "synth_lead") for p in programs]
    where = [""] * len(programs)
    if official_splits:
        ids = splits.deal(family, torch.Generator().manual_seed(cfg.data_seed)).tolist()
        names = {v: k for k, v in NSYNTH_SPLITS.items()}
        where = [names[{0: "train", 1: "test", 2: "val"}[i]] for i in ids]
    notes = [(i, pitch, velocity) for i in range(len(programs))
             for pitch in range(LOWEST_PITCH, LOWEST_PITCH + pitches) for velocity in velocities]
    waves = [torch.nn.functional.pad(w, (0, max(0, 64000 - w.numel())))[:64000]
             for w in (render_note(font, programs[i], p, v, 16000) for i, p, v in notes)]
    skip = int(ONSET_SKIP * 16000)
    problems = note_problems(torch.stack([w[skip:].pow(2).mean().sqrt() for w in waves]),
                             torch.stack([w.abs().max() for w in waves]))
    examples: dict[str, dict] = {name: {} for name in set(where)}
    for (i, pitch, velocity), wave, why in zip(notes, waves, problems):
        if why:
            continue
        folder = out / where[i]
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        instrument = f"{family[i]}_synthetic_{i:03d}"
        name = f"{instrument}-{pitch:03d}-{velocity:03d}"
        soundfile.write(str(folder / "audio" / f"{name}.wav"), wave.numpy(), 16000)
        examples[where[i]][name] = {
            "note_str": name, "instrument": i, "instrument_str": instrument,
            "instrument_family": NSYNTH_FAMILIES.index(family[i]), "instrument_family_str": family[i],
            "instrument_source": 2, "instrument_source_str": "synthetic", "pitch": pitch,
            "velocity": velocity, "sample_rate": 16000, "qualities": [0] * 10, "qualities_str": []}
    for name, found in examples.items():
        (out / name / "audio").mkdir(parents=True, exist_ok=True)
        (out / name / "examples.json").write_text(json.dumps(found, indent=2))
    skipped = tuple(f"program {programs[i]} pitch {p} velocity {v}: {why}" for (i, p, v), why in zip(notes, problems) if why)
    return sum(len(found) for found in examples.values()), skipped

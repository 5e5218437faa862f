"""Real-instrument data sources: notes from a SoundFont, an NSynth folder or a labelled folder.

Each source gives a *note bank* — mono waveforms at the config's sample rate with their labels —
and `pair_split` draws pairs from it as the synthetic source does: the two clips of a pair
share the instrument (the `timbre` factor) and differ in pitch (`pitch_class`). A clip is
`n_frames` STFT frames cut from a note at a random offset between ONSET_SKIP and OFFSET_MAX
seconds (past the attack, inside the sustain). No note feeds two splits (marl/splits.py:
`split_by` note or instrument), so test clips come from notes training never heard.

- soundfont: the GM programs of `cfg.programs` at MIDI pitches 60 … 60 + n_pitch_classes − 1
  and the velocities of `cfg.velocities`, each rendered once (midirenderer, at the config's sample rate, 1 s held)
  from `cfg.soundfont`, by default the TimGM6mb.sf2 that pretty-midi ships. A note that renders
  silent beside the font's own level (QUIET_DB below its median note) or clipped is skipped and
  counted; only a (program, pitch) with no usable velocity left is an error.
- nsynth: `data_dir/examples.json` and `data_dir/audio/<note>.wav`, NSynth's layout; or NSynth's
  own splits, `data_dir/nsynth-{train,valid,test}/`, used as the splits.
- folder: `data_dir/labels.csv` with columns file, timbre (or instrument) and pitch; the files
  are any audio soundfile reads (WAV, FLAC, OGG, MP3), paths relative to data_dir.

Notes are NoteBanks (marl/notes.py); SoundFont rendering lives in marl/soundfont.py.
`python -m marl.sources export-nsynth OUT` writes soundfont notes in NSynth's layout (a fixture
for the nsynth source, and a way to hand them to other tools), `--splits` in NSynth's three
split folders.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import torch

from marl import splits
from marl.config import NSYNTH_FAMILIES, Config, parse_list, parse_programs, parse_velocities
from marl.errors import UserError, exit_on_user_error
from marl.features import n_samples_for
from marl.notes import NSYNTH_SPLITS, OFFSET_MAX, ONSET_SKIP, NoteBank, check_audio, read_audio
from marl.soundfont import PROGRAMS, export_nsynth, soundfont_bank, soundfont_path


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
                    None if split is None else torch.tensor(split), timbre_names=tuple(map(str, t_values)))


def draw(items: list, cfg: Config) -> list:
    """At most cfg.max_notes of items (0: all), a draw seeded by data_seed, in their order."""
    if not cfg.max_notes or len(items) <= cfg.max_notes:
        return items
    keep = torch.randperm(len(items), generator=torch.Generator().manual_seed(cfg.data_seed))[:cfg.max_notes]
    return [items[i] for i in sorted(keep.tolist())]




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
    """n pairs of waveform clips (n, 2, n_samples) and their factors, each (n, 2), from the
    notes of one split."""
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
    factors = {k: v[notes_t] for k, v in bank.factors.items()}
    factors["offset"] = offsets
    return clips.reshape(n_pairs, 2, length), factors


def main(argv=None) -> None:
    from marl.cli import ArgumentParser

    p = ArgumentParser(prog="python -m marl.sources", description="Data-source tools.")
    sub = p.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export-nsynth", help="write soundfont notes in NSynth's layout")
    exp.add_argument("out", help="folder to write examples.json and audio/ into")
    exp.add_argument("--programs", default=",".join(map(str, PROGRAMS[:3])),
                     help="GM programs, numbers or names, comma-separated (default: %(default)s)")
    exp.add_argument("--pitches", type=int, default=3, help="pitches from MIDI 60 (default: 3)")
    # three, so that note-disjoint splits hold one velocity of each (instrument, pitch) out for test and val
    exp.add_argument("--velocities", default="64,100,127", help="MIDI velocities, comma-separated (default: %(default)s)")
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
    n, skipped = export_nsynth(out, Config.from_dict({"soundfont": args.soundfont}), args.pitches, programs,
                               velocities, args.splits)
    layout = "nsynth-{train,valid,test}/" if args.splits else "examples.json, audio/"
    print(f"{n} notes in NSynth's layout: {out}/ ({layout})")
    if skipped:
        print(f"{len(skipped)} note(s) left out: " + "; ".join(skipped))


if __name__ == "__main__":
    exit_on_user_error(main)

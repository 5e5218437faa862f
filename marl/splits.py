"""Which notes feed which split, so that a held-out figure is about unseen sounds.

A *note* is one rendered (program, pitch, velocity) of a SoundFont, or one file of an nsynth or
folder source; clips are cut from notes. With `split_by: note` no note feeds two splits; with
`split_by: instrument` no instrument does, so test instruments are unseen in training (HEAR's
NSynth pitch protocol). Both use one rule, `deal`:

- items are grouped by a key: notes by (instrument, pitch), so each split keeps every
  instrument's pitches where it can; instruments by family, so each family appears in train
  and test where it can;
- in each group of three or more (in a seeded random order), k = max(1, round(HELD_OUT · n))
  items go to test, k to val and the rest to train;
- smaller groups are pooled into one group and dealt the same way (a pool under three
  items goes to train).

With `split_by: note`, an instrument whose notes were all pooled and held out gets one back in
train, so every held-out instrument is one training has heard and timbre stays scorable.
"""

from __future__ import annotations

import torch

SPLIT_IDS = {"train": 0, "test": 1, "val": 2}
HELD_OUT = 0.2  # the share of each group held out for test, and again for val


def deal(keys: list, gen: torch.Generator) -> torch.Tensor:
    """The split id (SPLIT_IDS) of each item, given each item's group key."""
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    pool = [i for members in groups.values() if len(members) < 3 for i in members]
    dealt = [members for members in groups.values() if len(members) >= 3] + ([sorted(pool)] if pool else [])
    out = torch.full((len(keys),), SPLIT_IDS["train"], dtype=torch.long)
    for members in dealt:
        if len(members) < 3:
            continue
        order = [members[j] for j in torch.randperm(len(members), generator=gen).tolist()]
        k = max(1, round(HELD_OUT * len(members)))
        out[order[:k]] = SPLIT_IDS["test"]
        out[order[k:2 * k]] = SPLIT_IDS["val"]
    return out


def note_splits(factors: dict[str, torch.Tensor], split_by: str, gen: torch.Generator) -> torch.Tensor:
    """Split id of each note of a bank (factors: per-note `timbre`, `pitch_class`, maybe `family`)."""
    timbre, pitch = factors["timbre"].tolist(), factors["pitch_class"].tolist()
    if split_by == "note":
        out = deal(list(zip(timbre, pitch)), gen)
        for t in sorted(set(timbre)):
            mine = [i for i, x in enumerate(timbre) if x == t]
            if all(out[i] != SPLIT_IDS["train"] for i in mine):
                out[mine[0]] = SPLIT_IDS["train"]
        return out
    instruments = sorted(set(timbre))
    family = dict(zip(timbre, factors["family"].tolist())) if "family" in factors else {}
    per_instrument = deal([family.get(t) for t in instruments], gen)
    of = dict(zip(instruments, per_instrument.tolist()))
    return torch.tensor([of[t] for t in timbre], dtype=torch.long)


def timbre_factor(factors: dict[str, torch.Tensor], split: torch.Tensor) -> str:
    """The factor a timbre probe can be scored on across splits: the instrument when every held-out
    instrument was seen in training; else the instrument family when every held-out family was;
    else "" (not applicable)."""
    train = split == SPLIT_IDS["train"]
    for factor in ("timbre", "family"):
        if factor in factors and set(factors[factor][~train].tolist()) <= set(factors[factor][train].tolist()):
            return factor
    return ""

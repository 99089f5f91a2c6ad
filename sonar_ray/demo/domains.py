"""Five acoustically distinct domains and their labeled probe tasks.

`prior` is general sound events (transients: bells, clicks, buzzers, ...) whose tasks need event
timbre and temporal pattern; the new domains exercise other structure: formant speech (word
identity across speakers), harmonic music (instrument across melodies), animal calls (species),
and stationary scenes (environment). Every clip varies pitch, timing, room and noise level, so
labels are learnable but not trivial.
"""

from __future__ import annotations

import numpy as np

from sonar_ray.demo import synth as S

TASKS: dict[str, dict[str, list[str]]] = {
    "prior": {"event": ["bell", "click_train", "whoosh", "buzzer", "drip", "impact"],
              "pattern": ["single", "pair", "regular", "accelerating"]},
    "speech": {"word": ["sami", "tonu", "kela", "fisu", "mako"]},
    "music": {"instrument": ["flute", "clarinet", "string", "pluck", "organ"]},
    "bioacoustics": {"species": ["trill", "whistle", "downsweep", "croak", "buzz"]},
    "environmental": {"scene": ["rain", "wind", "engine", "siren", "alarm"]},
}
DOMAINS = tuple(TASKS)


def _place(out: np.ndarray, x: np.ndarray, at: int) -> None:
    end = min(len(out), at + len(x))
    if at < end:
        out[at:end] += x[: end - at]


# ---- prior: sound events in temporal patterns ----------------------------------------------------

def _event(rng, sr: int, kind: str) -> np.ndarray:
    if kind == "bell":
        n = int(sr * rng.uniform(0.4, 0.8))
        f = rng.uniform(500, 1400)
        t = np.arange(n) / sr
        x = sum(a * np.sin(2 * np.pi * f * r * t) * np.exp(-t / (d * rng.uniform(0.7, 1.3)))
                for r, a, d in [(1, 1, .35), (2.76, .6, .2), (5.4, .4, .1), (8.93, .25, .06)] if f * r < .45 * sr)
    elif kind == "click_train":
        n = int(sr * rng.uniform(0.12, 0.2))
        x = np.zeros(n)
        x[:: int(sr / rng.uniform(35, 90))] = 1.0
        x = S.bandpass(x, sr, 1500, 6000, order=2)
    elif kind == "whoosh":
        n = int(sr * rng.uniform(0.25, 0.45))
        lo = rng.uniform(600, 2500)
        x = S.bandpass(S.noise(rng, n), sr, lo, lo * 2.5) * np.hanning(n)
    elif kind == "buzzer":
        n = int(sr * rng.uniform(0.18, 0.3))
        x = S.harmonic(rng.uniform(180, 420), sr, n, 1 / np.arange(1, 16) * (np.arange(1, 16) % 2)) * S.envelope(n, sr, .005, 5)
    elif kind == "drip":
        n = int(sr * 0.08)
        f = np.linspace(rng.uniform(900, 1500), rng.uniform(2200, 3500), n)
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * S.envelope(n, sr, .002, .02)
    else:  # impact
        n = int(sr * 0.25)
        x = S.noise(rng, n) * S.envelope(n, sr, .001, .015) + 0.8 * np.sin(
            2 * np.pi * rng.uniform(90, 260) * np.arange(n) / sr) * S.envelope(n, sr, .002, .08)
    return x / (np.abs(x).max() + 1e-9)


def _onsets(rng, pattern: str, dur: float) -> list[float]:
    scale = dur / 2.0  # patterns are laid out for 2 s clips and stretched to the clip
    if pattern == "single":
        return [rng.uniform(0.05, 0.6) * dur]
    if pattern == "pair":
        t = rng.uniform(0.05, 0.5) * dur
        return [t, t + rng.uniform(0.12, 0.22) * scale]
    if pattern == "regular":
        gap, count = rng.uniform(0.16, 0.26) * scale, int(rng.integers(5, 7))
        start = rng.uniform(0.0, max(0.01, dur - gap * count))
        return [start + i * gap for i in range(count)]
    gaps = rng.uniform(0.34, 0.4) * scale * 0.72 ** np.arange(int(rng.integers(5, 7)))  # accelerating
    return list(rng.uniform(0.0, 0.1) * dur + np.concatenate([[0], np.cumsum(gaps)]))


def _prior(rng, sr: int, dur: float, labels: dict[str, str]) -> np.ndarray:
    out = np.zeros(int(sr * dur))
    for t in _onsets(rng, labels["pattern"], dur):
        _place(out, _event(rng, sr, labels["event"]) * rng.uniform(0.6, 1.0), int(t * sr))
    out = S.reverb(rng, out, sr, rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.4))
    return S.add_noise(rng, out, rng.uniform(12, 35), "brown")


# ---- speech: formant-synthesised words from many voices ------------------------------------------

VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010), "o": (570, 840, 2410),
          "u": (300, 870, 2240), "l": (360, 1300, 2700), "m": (250, 1200, 2300), "n": (250, 1700, 2500)}
FRICATIVES = {"s": (4000, 7500), "f": (1500, 7000)}
PLOSIVES = {"t": (3000, 6000), "k": (1300, 3000)}


def _speech(rng, sr: int, dur: float, labels: dict[str, str]) -> np.ndarray:
    f0, tract, rate = rng.uniform(85, 260), rng.uniform(0.85, 1.2), rng.uniform(0.8, 1.25)
    out = np.zeros(int(sr * dur))
    pos = int(sr * rng.uniform(0.05, 0.3) * dur)
    for ph in labels["word"]:
        if ph in FRICATIVES:
            n = int(sr * 0.11 / rate)
            lo, hi = FRICATIVES[ph]
            seg = S.bandpass(S.noise(rng, n), sr, lo, hi) * np.hanning(n) * (0.35 if ph == "s" else 0.15)
        elif ph in PLOSIVES:
            n = int(sr * 0.06 / rate)
            lo, hi = PLOSIVES[ph]
            seg = np.zeros(n)
            burst = int(sr * 0.02)
            seg[-burst:] = S.bandpass(S.noise(rng, burst), sr, lo, hi) * S.envelope(burst, sr, .001, .006) * 0.6
        else:
            n = int(sr * (0.17 if ph in "aeiou" else 0.07) / rate)
            contour = f0 * (1 + 0.08 * np.sin(np.linspace(0, np.pi, n)) + 0.01 * rng.standard_normal())
            source = S.harmonic(contour, sr, n, 1 / np.arange(1, 41) ** 1.3)
            formants = np.array(VOWELS[ph]) / tract
            seg = S.resonators(source, sr, formants, (80, 110, 150)) * np.hanning(n)
            seg *= 0.3 if ph in "mn" else 1.0
        _place(out, seg / (np.abs(seg).max() + 1e-9) * (0.3 if ph in FRICATIVES or ph in PLOSIVES else 1.0), pos)
        pos += int(len(seg) * 0.85)
    out = S.reverb(rng, out, sr, rng.uniform(0.1, 0.8), rng.uniform(0.05, 0.5))
    return S.add_noise(rng, out, rng.uniform(5, 30), "pink")


# ---- music: melodies on five synthetic instruments -----------------------------------------------

INSTRUMENTS = {  # harmonic amplitudes, attack s, decay s (time constant), vibrato depth
    "flute": (np.array([1, .35, .12, .05]), .06, 4.0, .006),
    "clarinet": (1 / np.arange(1, 20) * (np.arange(1, 20) % 2), .03, 4.0, .002),
    "string": (1 / np.arange(1, 25), .09, 4.0, .01),
    "pluck": (1 / np.arange(1, 25) ** 0.8, .003, .25, 0.0),
    "organ": (np.array([1, 1, .6, .5, .3, .3, .2, .15]), .01, 40.0, 0.0),
}


def _music(rng, sr: int, dur: float, labels: dict[str, str]) -> np.ndarray:
    amps, attack, decay, vib = INSTRUMENTS[labels["instrument"]]
    scale = np.array([0, 2, 4, 5, 7, 9, 11]) if rng.random() < 0.5 else np.array([0, 2, 3, 5, 7, 8, 10])
    root, beat = rng.integers(48, 72), 60 / rng.uniform(90, 170)
    out, t = np.zeros(int(sr * dur)), rng.uniform(0, 0.15)
    while t < dur - 0.05:
        length = beat * rng.choice([0.5, 1, 1, 2])
        n = int(sr * length)
        midis = [root + scale[rng.integers(7)] + 12 * rng.integers(0, 2)]
        if rng.random() < 0.3:
            midis.append(midis[0] + 4)
        for m in midis:
            f0 = 440 * 2 ** ((m - 69) / 12) * (1 + vib * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr))
            if labels["instrument"] == "pluck":  # higher partials die faster
                note = sum(a * np.sin(2 * np.pi * k * np.cumsum(f0) / sr) * np.exp(-np.arange(n) / sr * k / (decay * 4))
                           for k, a in enumerate(amps, 1) if k * f0.max() < .45 * sr)
            else:
                note = S.harmonic(f0, sr, n, amps)
            _place(out, note * S.envelope(n, sr, attack, decay) * np.minimum(1, (n - np.arange(n)) / (0.02 * sr)),
                   int(t * sr))
        t += length
    if labels["instrument"] == "flute":
        out += 0.02 * S.bandpass(S.noise(rng, len(out)), sr, 2000, 6000) * (np.abs(out) > 0.05)
    out = S.reverb(rng, out, sr, rng.uniform(0.3, 1.4), rng.uniform(0.1, 0.45))
    return S.add_noise(rng, out, rng.uniform(20, 40), "pink")


# ---- bioacoustics: animal calls in field noise ---------------------------------------------------

def _call(rng, sr: int, species: str) -> np.ndarray:
    if species == "trill":
        n_note, f = int(sr * 0.03), rng.uniform(3000, 5000)
        notes = int(rng.integers(8, 16))
        gap = int(sr / rng.uniform(12, 20))
        x = np.zeros(gap * notes)
        fm = f * (1 + 0.15 * np.linspace(-1, 1, n_note))
        note = np.sin(2 * np.pi * np.cumsum(fm) / sr) * np.hanning(n_note)
        for i in range(notes):
            x[i * gap:i * gap + n_note] += note
        return x
    if species == "whistle":
        n = int(sr * rng.uniform(0.3, 0.6))
        f = rng.uniform(1500, 3000) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 6) * np.arange(n) / sr))
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(n)
    if species == "downsweep":
        n = int(sr * 0.06)
        f = np.linspace(rng.uniform(5500, 6800), rng.uniform(2200, 3000), n)
        chirp = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.hanning(n)
        gap = int(sr * rng.uniform(0.09, 0.15))
        x = np.zeros(gap * int(rng.integers(3, 7)))
        for i in range(0, len(x) - n, gap):
            x[i:i + n] += chirp
        return x
    if species == "croak":
        n, f0 = int(sr * rng.uniform(0.25, 0.4)), rng.uniform(300, 650)
        pulses = 0.5 * (1 + np.sign(np.sin(2 * np.pi * rng.uniform(20, 40) * np.arange(n) / sr)))
        return S.harmonic(f0, sr, n, [1, .7, .4, .2]) * pulses * np.hanning(n)
    n = int(sr * rng.uniform(0.6, 1.2))  # buzz: insect, high carrier with fast AM
    am = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(100, 200) * np.arange(n) / sr))
    return np.sin(2 * np.pi * rng.uniform(5000, 6800) * np.arange(n) / sr) * am * np.hanning(n)


def _bioacoustics(rng, sr: int, dur: float, labels: dict[str, str]) -> np.ndarray:
    out = np.zeros(int(sr * dur))
    t = rng.uniform(0, 0.3) * dur
    while t < dur * 0.85:
        call = _call(rng, sr, labels["species"])
        _place(out, call * rng.uniform(0.5, 1.0), int(t * sr))
        t += len(call) / sr + rng.uniform(0.1, 0.5)
    out = S.reverb(rng, out, sr, rng.uniform(0.3, 1.2), rng.uniform(0.05, 0.3))
    return S.add_noise(rng, out, rng.uniform(0, 20), "pink")


# ---- environmental: stationary scenes ------------------------------------------------------------

def _environmental(rng, sr: int, dur: float, labels: dict[str, str]) -> np.ndarray:
    n, scene = int(sr * dur), labels["scene"]
    t = np.arange(n) / sr
    if scene == "rain":
        out = 0.3 * S.bandpass(S.noise(rng, n, "pink"), sr, 800, 7000)
        drops, count = np.zeros(n), int(rng.uniform(40, 200) * dur)
        drops[rng.integers(0, n, count)] = rng.uniform(0.5, 2, count)
        out += S.bandpass(drops, sr, 2000, 7000, order=2)
    elif scene == "wind":
        gust = np.interp(t, np.linspace(0, dur, 6), rng.uniform(0.2, 1.0, 6))
        out = S.lowpass(S.noise(rng, n, "brown"), sr, rng.uniform(300, 900)) * gust
    elif scene == "engine":
        rpm = rng.uniform(25, 60) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.2, 1) * t))
        out = S.harmonic(rpm, sr, n, 1 / np.arange(1, 30) ** 0.7) + 0.5 * S.lowpass(S.noise(rng, n, "brown"), sr, 500)
    elif scene == "siren":
        f = rng.uniform(600, 900) * (1 + 0.5 * (0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(0.5, 2.0))))
        out = S.harmonic(f, sr, n, [1, .5, .3, .2])
    else:  # alarm: beeping
        gate = (np.sin(2 * np.pi * rng.uniform(2, 6) * t) > 0).astype(float)
        out = S.harmonic(rng.uniform(1800, 3000), sr, n, [1, 0, .3]) * S.lowpass(gate, sr, 200)
    out = S.reverb(rng, out, sr, rng.uniform(0.2, 1.0), rng.uniform(0.1, 0.4))
    return S.add_noise(rng, out, rng.uniform(0, 15), rng.choice(["pink", "brown"]))


SYNTHS = {"prior": _prior, "speech": _speech, "music": _music, "bioacoustics": _bioacoustics,
          "environmental": _environmental}


def synthesize(domain: str, rng: np.random.Generator, sr: int, dur: float, labels: dict[str, str]) -> np.ndarray:
    """A clip of `domain` with the given labels (random for tasks not given), peak-normalised."""
    full = {task: labels.get(task) or classes[rng.integers(len(classes))] for task, classes in TASKS[domain].items()}
    x = SYNTHS[domain](rng, sr, dur, full)
    return S.normalize(x, rng.uniform(0.2, 0.9)).astype(np.float32)

"""Synthetic RAVDESS-format benchmark: cartoon faces that talk, written as full-AV .mp4 (H.264 + AAC).

Each actor has an identity (face shape, skin/hair/background colours; voice base pitch, formants,
timbre). Each emotion sets cues in both modalities (face: mouth curvature and openness, brow tilt and
height, eye openness, head motion; voice: pitch level and contour, loudness, speaking rate, spectral
tilt, roughness/breathiness/tremor). Intensity 02 shows the full cue, 01 a weaker one; statements
change the syllable pattern, repetitions the timing; lighting, placement, pixel and background noise
are nuisances. Cues are designed to confuse pairs of classes in one modality only:

    audio-identical pairs: neutral = calm, happy = surprised, angry = disgust
    video-identical pairs: calm = happy,  fearful = surprised, sad = disgust

so every class is unique given both modalities, while a perfect audio-only (video-only) model is
capped at 66.7 % (60 %) on the RAVDESS class mix. See docs/synthetic_data.md. Results on this set are
not RAVDESS results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from ..contract import RAVDESS_CLASSES
from ..utils import atomic_path, sha256_file, write_json_atomic

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SIZE = 96            # frame side (pixels)
FPS = 15
SECONDS = 2.0
SAMPLE_RATE = 16000  # audio written at 16 kHz; the loader's resampler handles any rate

# emotion -> (audio profile, video profile); pairs sharing a profile are identical in that modality
CUES = {"neutral": ("low", "neutral"), "calm": ("low", "pos"), "happy": ("pos", "pos"), "sad": ("sad", "neg"),
        "angry": ("harsh", "angry"), "fearful": ("fear", "wide"), "disgust": ("harsh", "neg"),
        "surprised": ("pos", "wide")}

# face: smile (+ corners up / - down), mouth opening, brow tilt (+ inner ends up), brow raise, eye opening,
# head motion (kind, amplitude in px)
VIDEO = {
    "neutral": dict(smile=0.0, open=0.05, tilt=0.0, raise_=0.0, eye=1.0, motion="still", amp=0.5),
    "pos": dict(smile=1.0, open=0.3, tilt=0.0, raise_=0.15, eye=0.55, motion="nod", amp=2.0),
    "neg": dict(smile=-1.0, open=0.0, tilt=0.8, raise_=-0.3, eye=0.6, motion="droop", amp=4.0),
    "angry": dict(smile=-0.2, open=0.6, tilt=-1.0, raise_=-0.6, eye=0.8, motion="shake", amp=2.5),
    "wide": dict(smile=0.0, open=1.0, tilt=0.4, raise_=1.0, eye=1.7, motion="jerk", amp=3.0),
}
# voice: pitch multiplier, contour, accent range, loudness, syllables/s, spectral tilt (dB/octave),
# roughness (subharmonic + noise), breathiness, tremor depth
AUDIO = {
    "low": dict(pitch=1.0, contour="decl", range=0.06, loud=0.45, rate=3.8, tilt=-11.0, rough=0.0, breath=0.05,
                tremor=0.0),
    "pos": dict(pitch=1.4, contour="rise", range=0.25, loud=0.8, rate=5.0, tilt=-7.0, rough=0.0, breath=0.05,
                tremor=0.0),
    "harsh": dict(pitch=1.1, contour="fall", range=0.15, loud=1.0, rate=4.5, tilt=-4.0, rough=0.45, breath=0.1,
                  tremor=0.0),
    "sad": dict(pitch=0.82, contour="fall", range=0.03, loud=0.3, rate=2.8, tilt=-15.0, rough=0.0, breath=0.35,
                tremor=0.0),
    "fear": dict(pitch=1.55, contour="flat", range=0.08, loud=0.6, rate=5.8, tilt=-8.0, rough=0.0, breath=0.15,
                 tremor=0.07),
}
INTENSITY_SCALE = {"01": 0.6, "02": 1.0}
# two "statements": vowel sequences (indices into VOWELS) of different length
STATEMENTS = {"01": [0, 3, 1, 4, 2, 0], "02": [2, 1, 0, 3, 1, 4, 0]}
VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240)]


def _blend(profile: dict, neutral: dict, s: float) -> dict:
    """Neutral + s * (profile - neutral) for numbers; categorical cues kept."""
    return {k: (neutral[k] + s * (v - neutral[k]) if isinstance(v, float) else v) for k, v in profile.items()}


@dataclass
class Identity:
    actor: int
    f0: float
    formant: float
    tilt: float
    breath: float
    gain: float
    face_w: float
    face_h: float
    eye_dx: float
    eye_y: float
    eye_w: float
    mouth_w: float
    mouth_y: float
    skin: tuple
    hair: tuple
    shirt: tuple
    bg: tuple
    hair_h: float


def actor_identity(seed: int, actor: int) -> Identity:
    rng = np.random.default_rng([seed, 7919, actor])
    male = actor % 2 == 1  # RAVDESS: odd actors male, even female
    skin = np.array([[234, 192, 160], [198, 145, 110], [150, 100, 70], [241, 210, 180], [120, 80, 55]])
    tone = skin[rng.integers(len(skin))] + rng.integers(-12, 13, 3)
    return Identity(
        actor=actor, f0=float(rng.uniform(95, 135) if male else rng.uniform(175, 235)),
        formant=float(rng.uniform(0.9, 1.0) if male else rng.uniform(1.05, 1.18)),
        tilt=float(rng.uniform(-2, 2)), breath=float(rng.uniform(0.0, 0.05)), gain=float(rng.uniform(0.8, 1.2)),
        face_w=float(rng.uniform(0.26, 0.32)), face_h=float(rng.uniform(0.34, 0.40)),
        eye_dx=float(rng.uniform(0.34, 0.42)), eye_y=float(rng.uniform(-0.30, -0.18)),
        eye_w=float(rng.uniform(0.15, 0.2)), mouth_w=float(rng.uniform(0.38, 0.5)),
        mouth_y=float(rng.uniform(0.42, 0.52)),
        skin=tuple(int(c) for c in np.clip(tone, 0, 255)),
        hair=tuple(int(c) for c in rng.integers(10, 120, 3)), shirt=tuple(int(c) for c in rng.integers(30, 220, 3)),
        bg=tuple(int(c) for c in rng.integers(60, 200, 3)), hair_h=float(rng.uniform(0.15, 0.45)))


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * 16)), int(round(y * 16))  # 4 fractional bits for cv2's `shift`


def render_video(ident: Identity, emotion: str, intensity: str, onset: float, rng: np.random.Generator) -> np.ndarray:
    """-> uint8 [F, SIZE, SIZE, 3] RGB frames of a talking face showing `emotion`."""
    cue = _blend(VIDEO[CUES[emotion][1]], VIDEO["neutral"], INTENSITY_SCALE[intensity])
    n = int(round(SECONDS * FPS))
    s = SIZE
    cx0, cy0 = s / 2 + rng.uniform(-4, 4), s * 0.47 + rng.uniform(-3, 3)
    scale0 = rng.uniform(0.94, 1.06)
    light = rng.uniform(0.85, 1.15)
    ramp = 0.25 if intensity == "02" else 0.4
    blinks = rng.uniform(0, SECONDS, 2)
    talk_f, talk_ph = rng.uniform(3.5, 4.5), rng.uniform(0, 2 * np.pi)
    grad = np.linspace(0.85, 1.15, s, dtype=np.float32)[:, None, None]
    bg = np.clip(np.array(ident.bg, np.float32) + rng.uniform(-20, 20, 3), 0, 255) * grad * np.ones((s, s, 3),
                                                                                                     np.float32)
    texture = rng.normal(0, 6, (s, s, 3)).astype(np.float32)
    frames = np.empty((n, s, s, 3), np.float32)
    for i in range(n):
        t = i / FPS
        a = float(np.clip((t - onset) / ramp, 0, 1))  # expression strength now
        a = a * a * (3 - 2 * a)
        dx = dy = 0.0
        sc = scale0
        m, amp, tt = cue["motion"], cue["amp"], max(0.0, t - onset)
        if m == "still":
            dx = amp * np.sin(2 * np.pi * 0.3 * t + talk_ph)
        elif m == "nod":
            dy = a * amp * np.sin(2 * np.pi * 1.5 * tt)
        elif m == "droop":
            dy, sc = a * amp, scale0 * (1 - 0.03 * a)
        elif m == "shake":
            dx = a * amp * np.sin(2 * np.pi * 3.0 * tt)
        elif m == "jerk":
            dy, sc = -a * amp, scale0 * (1 - 0.07 * a)
            dx = a * 0.8 * np.sin(2 * np.pi * 7.0 * tt)
        cx, cy = cx0 + dx, cy0 + dy
        fw, fh = ident.face_w * s * sc, ident.face_h * s * sc
        img = bg.copy()
        cv2.ellipse(img, _pt(cx, cy + fh * 1.55), _pt(fw * 1.9, fh * 0.9), 0, 0, 360, ident.shirt, -1, cv2.LINE_AA, 4)
        cv2.ellipse(img, _pt(cx, cy - fh * 0.25), _pt(fw * 1.08, fh * (0.8 + ident.hair_h)), 0, 0, 360, ident.hair,
                    -1, cv2.LINE_AA, 4)
        cv2.ellipse(img, _pt(cx, cy), _pt(fw, fh), 0, 0, 360, ident.skin, -1, cv2.LINE_AA, 4)
        dark = tuple(int(c * 0.35) for c in ident.hair)
        # eyes
        eye_open = 1.0 + a * (cue["eye"] - 1.0)
        if any(abs(t - b) < 0.07 for b in blinks):
            eye_open = 0.1
        ew, eh = ident.eye_w * fw, max(0.6, 0.09 * fh * eye_open)
        ey = cy + ident.eye_y * fh
        for side in (-1, 1):
            ex = cx + side * ident.eye_dx * fw
            cv2.ellipse(img, _pt(ex, ey), _pt(ew, eh), 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA, 4)
            cv2.circle(img, _pt(ex, ey), int(16 * min(eh, ew * 0.5)), (30, 30, 40), -1, cv2.LINE_AA, 4)
            # brow: inner end up by tilt, both ends up by raise
            by = ey - 0.16 * fh - a * cue["raise_"] * 0.07 * fh
            inner = (cx + side * 0.12 * fw, by - a * cue["tilt"] * 0.07 * fh)
            outer = (cx + side * (ident.eye_dx + 0.3) * fw, by + a * cue["tilt"] * 0.02 * fh)
            cv2.line(img, _pt(*inner), _pt(*outer), dark, max(2, int(s / 40)), cv2.LINE_AA, 4)
        # nose
        cv2.line(img, _pt(cx, cy - 0.05 * fh), _pt(cx, cy + 0.18 * fh), tuple(int(c * 0.8) for c in ident.skin), 2,
                 cv2.LINE_AA, 4)
        # mouth: corners move with smile, opening = expression + talking motion
        mw, my = ident.mouth_w * fw, cy + ident.mouth_y * fh
        talking = 0.12 * (1 + np.sin(2 * np.pi * talk_f * t + talk_ph)) if onset < t < onset + 1.5 else 0.0
        opening = (cue["open"] - VIDEO["neutral"]["open"]) * a + VIDEO["neutral"]["open"] + talking
        curve = a * cue["smile"] * 0.09 * fh
        xs = np.linspace(-1, 1, 9)
        bend = my + curve * (1 - xs ** 2) - curve  # image y grows downwards: a smile lifts the corners
        upper = np.stack([cx + xs * mw, bend - opening * 0.06 * fh * (1 - xs ** 2)], 1)
        lower = np.stack([cx + xs * mw, bend + opening * 0.16 * fh * (1 - xs ** 2)], 1)
        poly = np.concatenate([upper, lower[::-1]])
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], (90, 20, 30), cv2.LINE_AA, 4)
        cv2.polylines(img, [np.round(upper * 16).astype(np.int32)], False, (150, 40, 50), 2, cv2.LINE_AA, 4)
        frames[i] = img
    # sensor noise drawn at half resolution (4x fewer random numbers; generation time matters here)
    grain = rng.standard_normal((n, s // 2, s // 2, 1), dtype=np.float32) * 3.0
    frames = frames * light + texture + grain.repeat(2, 1).repeat(2, 2)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _contour(kind: str, u: np.ndarray) -> np.ndarray:
    """Pitch multiplier over the utterance (u in [0, 1])."""
    if kind == "rise":
        return 1 - 0.08 * u + 0.35 * np.clip((u - 0.6) / 0.4, 0, 1) ** 2
    if kind == "fall":
        return 1.12 - 0.3 * u
    if kind == "decl":
        return 1.03 - 0.08 * u
    return np.ones_like(u)


N_FFT, HOP = 512, 128


def _stft(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n] -> complex [frames, N_FFT // 2 + 1] (Hann, hop HOP, zero-padded ends), bin frequencies in Hz."""
    pad = np.pad(x, (N_FFT // 2, N_FFT // 2 + HOP))
    frames = np.lib.stride_tricks.sliding_window_view(pad, N_FFT)[::HOP]
    return np.fft.rfft(frames * np.hanning(N_FFT), axis=1), np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE)


def _istft(spec: np.ndarray, n: int) -> np.ndarray:
    """Weighted overlap-add inverse of `_stft`, cropped to n samples."""
    win = np.hanning(N_FFT)
    frames = np.fft.irfft(spec, N_FFT, axis=1) * win
    out = np.zeros((spec.shape[0] - 1) * HOP + N_FFT)
    norm = np.zeros_like(out)
    for i, fr in enumerate(frames):
        out[i * HOP:i * HOP + N_FFT] += fr
        norm[i * HOP:i * HOP + N_FFT] += win ** 2
    return (out / np.maximum(norm, 1e-3))[N_FFT // 2:N_FFT // 2 + n]


def render_audio(ident: Identity, emotion: str, intensity: str, statement: str, onset: float,
                 rng: np.random.Generator) -> np.ndarray:
    """-> float32 [SECONDS * SAMPLE_RATE] speech-like audio with the emotion's voice cues."""
    cue = _blend(AUDIO[CUES[emotion][0]], AUDIO["low"], INTENSITY_SCALE[intensity])
    sr, n = SAMPLE_RATE, int(SECONDS * SAMPLE_RATE)
    t = np.arange(n) / sr
    vowels = STATEMENTS[statement]
    rate = cue["rate"] * rng.uniform(0.92, 1.08)
    durs = np.clip(rng.normal(1.0, 0.12, len(vowels)), 0.7, 1.3) / rate
    starts = onset + np.concatenate([[0.0], np.cumsum(durs)[:-1]])
    end = min(starts[-1] + durs[-1], SECONDS)
    u = np.clip((t - onset) / max(end - onset, 1e-3), 0, 1)
    accents = np.zeros(n)
    env = np.zeros(n)
    syl = np.zeros(n, np.int64)
    for k, (st, d) in enumerate(zip(starts, durs)):
        x = (t - st) / d
        inside = (x >= 0) & (x < 1)
        syl[inside] = k
        env += np.where(inside, np.sin(np.pi * np.clip(x, 0, 1)) ** 0.7, 0.0)
        if k % 2 == 0:
            accents += np.where(inside, np.sin(np.pi * np.clip(x, 0, 1)), 0.0)
    f0 = ident.f0 * cue["pitch"] * _contour(cue["contour"], u) * (1 + cue["range"] * accents)
    f0 *= 1 + cue["tremor"] * np.sin(2 * np.pi * 6.0 * t + rng.uniform(0, 6.3))
    jitter = np.cumsum(rng.normal(0, 1, n // 160 + 1))
    f0 *= 1 + 0.01 * np.repeat((jitter - jitter.mean()) / (np.abs(jitter).max() + 1e-6), 160)[:n]
    phase = 2 * np.pi * np.cumsum(f0) / sr
    # glottal source: a sawtooth (harmonics fall 6 dB/octave), with a subharmonic for rough voices
    source = (np.mod(phase, 2 * np.pi) / np.pi - 1.0) * (1 + cue["rough"] * np.sin(phase / 2))
    # vocal tract: formants of the current vowel + spectral tilt, applied frame by frame in the STFT domain
    spec, freqs = _stft(source)
    frame_syl = syl[np.minimum(np.arange(spec.shape[0]) * HOP, n - 1)]
    formants = np.array([VOWELS[vowels[i]] for i in frame_syl]) * ident.formant  # [frames, 3]
    f = np.maximum(freqs[None, :], 50.0)
    gain = sum(w / (1 + ((f - formants[:, j:j + 1]) / (60 + 0.06 * formants[:, j:j + 1])) ** 2)
               for j, w in enumerate((1.0, 0.7, 0.4)))
    gain = (gain + 0.02) * 10 ** ((cue["tilt"] + ident.tilt + 6.0) * np.log2(f / 100.0) / 20) * (f < sr / 2 - 300)
    voiced = _istft(spec * gain, n)
    noise = np.diff(rng.normal(0, 1, n + 1))  # high-passed: aspiration / frication
    burst = np.zeros(n)
    for st in starts:
        burst += np.exp(-np.clip(t - st, 0, None) / 0.015) * (t >= st)
    speech = voiced / (np.sqrt(np.mean(voiced[env > 0.1] ** 2)) + 1e-8) * env
    speech += (cue["breath"] + ident.breath + cue["rough"] * 0.5) * noise * env + 0.4 * noise * burst * (t < end)
    speech *= 0.12 * cue["loud"] * ident.gain
    hum = rng.normal(0, 1, n)
    spec = np.fft.rfft(hum) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / sr), 20.0))  # pink background noise
    hum = np.fft.irfft(spec, n)
    hum *= 10 ** (-rng.uniform(34, 46) / 20) * 0.1 / (np.std(hum) + 1e-8)
    return np.tanh(speech + hum).astype(np.float32)


def encode_mp4(path: str | os.PathLike, frames: np.ndarray, audio: np.ndarray, fps: int = FPS,
               sample_rate: int = SAMPLE_RATE) -> None:
    """Write H.264 (yuv420p) + AAC mono into an .mp4, deterministically (bitexact, one thread)."""
    with av.open(str(path), "w", format="mp4", container_options={"fflags": "+bitexact"}) as out:
        # x264's macroblock-tree rate control gave different bytes for identical input now and then: it is off
        vs = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "18", "threads": "1",
                                                          "g": str(fps), "x264-params": "mbtree=0"})
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.flags |= av.codec.context.Flags.bitexact
        aus = out.add_stream("aac", rate=sample_rate, layout="mono", options={"aac_coder": "fast"})
        aus.bit_rate = 64000
        aus.codec_context.flags |= av.codec.context.Flags.bitexact
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        pcm = audio.astype(np.float32)[None, :]
        for i in range(0, pcm.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + 1024]), format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = sample_rate, i
            out.mux(aus.encode(chunk))
        out.mux(aus.encode(None))


def ravdess_name(emotion: int, intensity: str, statement: str, repetition: str, actor: int) -> str:
    return f"01-01-{emotion:02d}-{intensity}-{statement}-{repetition}-{actor:02d}.mp4"


def clip_specs(actors: int, size: str) -> list[tuple[int, int, str, str, str]]:
    """(actor, emotion code, intensity, statement, repetition) per clip.

    default: the RAVDESS speech design, 60 per actor (neutral 2 statements x 2 repetitions at intensity 01;
    every other emotion 2 intensities x 2 statements x 2 repetitions). small: 2 clips per emotion per actor.
    """
    specs = []
    for a in range(1, actors + 1):
        for e in range(1, 9):
            if size == "small":
                combos = [("01", "01", "01"), ("01", "02", "02")] if e == 1 else [("01", "01", "01"), ("02", "02", "02")]
            else:
                combos = [(i, s, r) for i in (("01",) if e == 1 else ("01", "02")) for s in ("01", "02")
                          for r in ("01", "02")]
            specs.extend((a, e, i, s, r) for i, s, r in combos)
    return specs


def clip_relpath(spec: tuple[int, int, str, str, str]) -> str:
    actor, emo, inten, stmt, rep = spec
    return f"Actor_{actor:02d}/{ravdess_name(emo, inten, stmt, rep, actor)}"


MANIFEST = "synth.json"
_SYNTH_NAME = re.compile(r"Actor_\d\d/01-01-0\d-0\d-0\d-0\d-\d\d\.mp4")


def _owned(out: Path, old: dict | None) -> dict[str, str | None]:
    """{relative path: sha256} of the files an earlier `synth` run wrote under `out` that still hold what it
    wrote (sha256 None: written by a run that was interrupted, or by a manifest from before files were recorded,
    whose file list follows from its parameters)."""
    if old is None:
        return {}
    if "files" in old:
        files = dict(old["files"]) if isinstance(old["files"], dict) else {}
        odd = [rel for rel in files if not _SYNTH_NAME.fullmatch(str(rel))]
        if odd:  # a path from JSON is never followed outside the names synth writes ("../x", "/x")
            raise ValueError(f"{out / MANIFEST} lists {odd[0]!r}, which is not a file synth writes; the manifest "
                             "was edited: move it away or choose another --out")
    else:
        files = {clip_relpath(s): None for s in clip_specs(int(old.get("actors") or 0), old.get("size", "default"))}
    return {rel: sha for rel, sha in files.items()
            if (out / rel).is_file() and (sha is None or sha256_file(out / rel) == sha)}


def plan_outputs(out: Path, specs: list, old: dict | None, overwrite: bool) -> tuple[dict, list[str]]:
    """(files this run may replace, stale files of the previous set to delete). Raises FileExistsError when a
    target exists that synth did not write: it never overwrites or deletes a file it did not write."""
    owned = _owned(out, old)
    targets = [clip_relpath(s) for s in specs]
    foreign = [t for t in targets if (out / t).exists() and t not in owned]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise FileExistsError(f"{out / foreign[0]}{more} exists and was not written by `emodistill data synth` "
                              f"(not recorded in {out / MANIFEST}, or changed since); synth never overwrites files it "
                              "did not write: move them away or choose another --out")
    stale = sorted(set(owned) - set(targets)) if overwrite else []
    return owned, stale


def make_clip(out: str, seed: int, spec: tuple[int, int, str, str, str]) -> str:
    """Render, synthesise and encode one clip; returns its path. Deterministic in (seed, spec)."""
    actor, emo, inten, stmt, rep = spec
    ident = actor_identity(seed, actor)
    rng = np.random.default_rng([seed, actor, emo, int(inten), int(stmt), int(rep)])
    onset = float(rng.uniform(0.1, 0.45))
    emotion = RAVDESS_CLASSES[emo - 1]
    frames = render_video(ident, emotion, inten, onset, rng)
    audio = render_audio(ident, emotion, inten, stmt, onset, rng)
    path = Path(out) / clip_relpath(spec)
    with atomic_path(path) as tmp:
        encode_mp4(tmp, frames, audio)
    return str(path)


def _job(args):
    cv2.setNumThreads(1)
    return make_clip(*args)


def read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: unreadable synth manifest ({e}); move it away or choose another --out") from None
    if not isinstance(old, dict) or old.get("generator", "emodistill.core.data.synth") != "emodistill.core.data.synth":
        raise ValueError(f"{path} was not written by `emodistill data synth`; choose another --out")
    return old


def generate(out: str | os.PathLike, actors: int | None = None, seed: int = 0, size: str = "default",
             workers: int = 2, progress: bool = True, overwrite: bool = False) -> dict:
    """Write the synthetic set under `out`; returns the manifest (also written to out/synth.json, with the
    sha256 of every file written). Files synth did not write are never overwritten or deleted; `overwrite`
    replaces a different set written by synth before (its stale files are deleted)."""
    from tqdm.auto import tqdm

    if size not in ("small", "default"):
        raise ValueError(f"size must be 'small' or 'default', got {size!r}")
    actors = actors if actors is not None else (6 if size == "small" else 24)
    if not 3 <= actors <= 24:
        raise ValueError(f"--actors must be in 3..24 (RAVDESS actor codes 01..24), got {actors}")
    out = Path(out)
    specs = clip_specs(actors, size)
    old = read_manifest(out)
    if old is not None and not overwrite and (old.get("seed"), old.get("size"), old.get("actors"),
                                              old.get("version")) != (seed, size, actors, GENERATOR_VERSION):
        raise FileExistsError(f"{out} holds a different synthetic set (seed {old.get('seed')}, size "
                              f"{old.get('size')}, {old.get('actors')} actors); pass --overwrite to replace it "
                              "(only files synth wrote are touched) or choose another --out")
    owned, stale = plan_outputs(out, specs, old, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for rel in stale:  # the previous set's own files, verified by their recorded sha256
        (out / rel).unlink()
        with contextlib.suppress(OSError):  # its Actor_ folder, if synth's files were all it held
            (out / rel).parent.rmdir()
    # recorded before writing: an interrupted run's files are still known to be synth's (sha256 None)
    pending = {**{rel: sha for rel, sha in owned.items() if rel not in stale},
               **{clip_relpath(s): None for s in specs}}
    params = {"generator": "emodistill.core.data.synth", "version": GENERATOR_VERSION, "seed": seed, "size": size,
              "actors": actors}
    write_json_atomic(out / MANIFEST, {**params, "complete": False, "files": pending})
    jobs = [(str(out), seed, s) for s in specs]
    t0 = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="synth clips", unit="clip", disable=not progress)
    if workers <= 0:
        for j in jobs:
            _job(j)
            bar.update()
    else:
        import multiprocessing as mp

        with mp.get_context("forkserver").Pool(workers) as pool:
            for _ in pool.imap_unordered(_job, jobs, chunksize=4):
                bar.update()
    bar.close()
    counts = {c: sum(1 for s in specs if s[1] == i + 1) for i, c in enumerate(RAVDESS_CLASSES)}
    manifest = {**params, "clips": len(specs), "per_class": counts, "frame_size": SIZE, "fps": FPS,
                "seconds": SECONDS, "sample_rate": SAMPLE_RATE, "cues": CUES,
                "note": "synthetic data; results on it are not RAVDESS results", "complete": True,
                "files": {clip_relpath(s): sha256_file(out / clip_relpath(s)) for s in specs}}
    write_json_atomic(out / MANIFEST, manifest)
    logger.info("wrote %d clips to %s in %.1f s", len(specs), out, time.perf_counter() - t0)
    return manifest


__all__ = ["generate", "make_clip", "clip_specs", "actor_identity", "render_video", "render_audio", "encode_mp4",
           "ravdess_name", "clip_relpath", "plan_outputs", "read_manifest", "CUES", "VIDEO", "AUDIO", "GENERATOR_VERSION"]

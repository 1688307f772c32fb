"""Does a stream keep up, and how late is its label? The real-time verdict of `emodistill predict --stream`.

A stream runs one window (the model's `clip_seconds` of media) every `hop` seconds. Per window, the host decodes,
finds the face, preprocesses and cuts the audio (measured here), and the model runs (its figure from the export's
budget verdict, labelled measured / compiled / estimated, on the budget's GPU). So:

    keeps up      p95(host work per window) + p95(model) <= hop        (work per window against time per window)
    label latency window + p95(host) + p95(model)                       (the first frame of a window waits for the
                                                                         whole window, then for the work on it)

The measured real-time factor (wall / media, with this machine's own ONNX Runtime model) is reported next to it.
No per-frame figure is compared with per-window work: a 60 fps frame budget does not bound a window that covers
a whole hop of media. Imports nothing heavier than the standard library.
"""

from __future__ import annotations

KEEPS_UP, FALLS_BEHIND = "KEEPS UP", "FALLS BEHIND"


def model_row(verdict: dict | None) -> dict | None:
    """The model's p95 from an export's budget verdict (a sidecar's `budget.verdict`), with its label."""
    if not verdict:
        return None
    fig = (verdict.get("figures") or {}).get("p95_ms")
    if fig is None:
        return None
    label = (verdict.get("labels") or {}).get("p95_ms", verdict.get("method", "estimated"))
    return {"p95_ms": float(fig), "label": label, "device": verdict.get("profile") or verdict.get("device"),
            "budget": verdict.get("budget"), "precision": verdict.get("precision")}


def realtime_verdict(timing: dict, window_s: float, host_device: str, model: dict | None) -> dict:
    """The verdict of a finished stream.

    timing: `run_stream`'s timing (`stages.host.p95_ms`, `hop_s`, `realtime_factor`, `windows`); window_s: the
    model's clip length; model: `model_row(...)`, None when no export verdict is known (then the model's time on
    this machine, `stages.model.p95_ms`, measured, stands in).
    -> keeps_up, label_latency_s, the figures with their labels, and one line of text.
    """
    hop_ms = 1e3 * float(timing["hop_s"])
    host_ms = float(timing["stages"]["host"]["p95_ms"])
    if model is None:
        model = {"p95_ms": float(timing["stages"]["model"]["p95_ms"]), "label": "measured", "device": host_device,
                 "budget": None, "precision": None}
    work_ms = host_ms + model["p95_ms"]
    keeps_up = work_ms <= hop_ms
    latency_s = float(window_s) + work_ms / 1e3
    rtf = timing.get("realtime_factor")
    text = (f"real time: a {window_s:g} s window every {hop_ms / 1e3:g} s; work per window host {host_ms:.2f} ms p95 "
            f"[measured on {host_device}] + model {model['p95_ms']:.2f} ms p95 [{model['label']} on {model['device']}]"
            f" = {work_ms:.2f} ms vs hop {hop_ms:.0f} ms -> {KEEPS_UP if keeps_up else FALLS_BEHIND}"
            f" ({hop_ms / work_ms:.1f}x headroom); label latency {latency_s:.2f} s (window {window_s:g} s + work)")
    if rtf:
        text += f"; here: real-time factor {rtf:.3f} ({1 / rtf:.1f}x real time, the model on this CPU)"
    return {"keeps_up": keeps_up, "verdict": KEEPS_UP if keeps_up else FALLS_BEHIND, "hop_ms": hop_ms,
            "window_s": float(window_s), "host_p95_ms": host_ms, "host_device": host_device, "model": model,
            "work_p95_ms": work_ms, "label_latency_s": latency_s, "realtime_factor": rtf, "text": text}


__all__ = ["KEEPS_UP", "FALLS_BEHIND", "model_row", "realtime_verdict"]

"""emodistill: distill an audio-visual emotion recognizer and prove it fits an RTX 3050."""

__version__ = "0.1.0"

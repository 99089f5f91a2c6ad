"""Audio features."""

from sonar_ray.audio.fbank import kaldi_fbank

__all__ = ["kaldi_fbank"]

"""The demo corpus: a prior general-audio set and four new domains, as real audio files + manifests."""

from sonar_ray.demo.corpus import CORPUS_VERSION, SCALES, generate_corpus
from sonar_ray.demo.domains import DOMAINS, TASKS

__all__ = ["CORPUS_VERSION", "SCALES", "generate_corpus", "DOMAINS", "TASKS"]

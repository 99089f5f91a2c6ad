"""BEATs encoder and acoustic tokenizer with official names and {'cfg', 'model'} checkpoints."""

from sonar_ray.models.beats import BEATs, BEATsConfig
from sonar_ray.models.tokenizer import Tokenizer, TokenizerConfig

__all__ = ["BEATs", "BEATsConfig", "Tokenizer", "TokenizerConfig"]

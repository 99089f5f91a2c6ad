"""sonar-ray: keep a BEATs audio model current with SONAR continual pre-training on Ray."""

__version__ = "0.1.0"

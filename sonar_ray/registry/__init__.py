"""`python -m sonar_ray.registry list|show|promote|rollback`: the model lineage registry from a shell.

The registry itself lives in sonar_ray.pipelines.registry.
"""

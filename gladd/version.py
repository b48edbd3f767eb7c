"""gladd's version, in a module that imports nothing: any layer may read it.

The build reads it from here too (``[tool.hatch.version]`` in pyproject.toml).
"""

__version__ = "0.1.0"

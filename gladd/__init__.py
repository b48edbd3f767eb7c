"""gladd: a resilience daemon driven by one declarative file, ``policies.toml``."""

__version__ = "0.1.0"

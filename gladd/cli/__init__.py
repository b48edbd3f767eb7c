"""The ``gladd`` command line: one module per command."""

"""The ``mpt`` command line (typer). ``python -m mpt_cli`` is the same as ``mpt``."""

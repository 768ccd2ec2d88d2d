"""The ``ras-guard`` command line: thin commands over library calls."""

"""The package version, in a module of its own so that nothing needs to import the package to read it.

Example:
    >>> from ras_guard._version import __version__
    >>> __version__.count(".") >= 1
    True
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

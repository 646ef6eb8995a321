"""microex: an exchange and trading stack in Python with a numba-compiled core."""

__version__ = "0.1.0"

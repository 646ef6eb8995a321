"""microex.core: records, the compiled matching and risk kernels, their Python twins.

Numba keys each cached function on its own source file only, but the kernel
inlines helpers from every module here: edit risk.py alone and a stale kernel
would load. So the cache lives in a directory named after a hash of all of this
package's sources (unless NUMBA_CACHE_DIR says otherwise).
"""

import hashlib as _hashlib
import os as _os
from pathlib import Path as _Path

from numba import config as _numba_config

if not _os.environ.get("NUMBA_CACHE_DIR"):
    _here = _Path(__file__).resolve().parent
    _digest = _hashlib.sha1(b"".join(p.read_bytes() for p in sorted(_here.glob("*.py")))).hexdigest()[:12]
    _numba_config.CACHE_DIR = str(_here / "__pycache__" / f"numba-{_digest}")

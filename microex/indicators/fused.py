"""`fmadd(a, b, c)`: a*b + c the way the installed TA-Lib computes it, for kernels that must match it.

TA-Lib 0.8 builds EMA, MACD and ATR twice (gcc `target_clones("default", "fma")`) and picks
the clone at load time: on a CPU with FMA its recurrences round once (a fused multiply-add),
on one without they round twice. Those recurrences are the only places where the rounding
of one step differs between the two, so the kernels here call `fmadd` exactly where TA-Lib's
fma clone fuses, and `fmadd` follows the same choice: llvm.fma (one rounding) when numba
compiles for a CPU with FMA, else a multiply then an add. Everything else in the kernels
is plain IEEE arithmetic in TA-Lib's order (numba never contracts without fastmath, which
the kernels do not use).

Invariants: fmadd(a, b, c) is a*b + c rounded once on an FMA target, twice otherwise; with
NUMBA_DISABLE_JIT=1 it is plain Python with the same result (exact rational arithmetic
rounded once, slow but only used where the jit is off).
"""

from __future__ import annotations

import math
from fractions import Fraction

from llvmlite import binding as llvm
from numba.core import config, types
from numba.extending import intrinsic


def _target_has_fma() -> bool:
    """Whether numba compiles for a CPU with FMA (numba's own CPU settings first, then the host)."""
    if config.CPU_FEATURES:
        return "+fma" in config.CPU_FEATURES.split(",")
    if config.CPU_NAME and config.CPU_NAME != "host":
        return False  # a named portable target (e.g. generic): no assumption
    return bool(llvm.get_host_cpu_features().get("fma", False))


HAS_FMA = _target_has_fma()


def _fma_python(a: float, b: float, c: float) -> float:
    if hasattr(math, "fma"):  # Python 3.13+
        return math.fma(a, b, c)
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    return float(Fraction(a) * Fraction(b) + Fraction(c))  # exact, then one rounding


def _unfused_python(a: float, b: float, c: float) -> float:
    return a * b + c


if config.DISABLE_JIT:
    fmadd = _fma_python if HAS_FMA else _unfused_python
else:
    @intrinsic
    def fmadd(typingctx, a, b, c):
        sig = types.float64(types.float64, types.float64, types.float64)

        def codegen(context, builder, signature, args):
            x, y, z = (context.cast(builder, v, t, types.float64) for v, t in zip(args, signature.args))
            if HAS_FMA:
                return builder.fma(x, y, z)
            return builder.fadd(builder.fmul(x, y), z)

        return sig, codegen

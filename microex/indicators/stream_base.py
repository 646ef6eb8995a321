"""The streaming side's common shape: per-instrument state in preallocated arrays, many updates a call.

A stream holds, for each of n_instruments, a row in a few numpy arrays: `count` (values taken
so far, int64), `state` (float64 scalars of the recursion) and, for windowed indicators, a
ring of the last n values. `update(instrument_ids, values)` hands all of it to one njit
kernel that loops over the updates in order: update j advances instrument ids[j] by one
value and writes that instrument's new output at out[j]. The loop body is written out in
the kernel, not in a helper taking the arrays: numba wraps such calls in reference-count
updates that cost more than the indicator itself. Ids may repeat and interleave in
any order; each instrument only ever sees its own values, in the order given.

Invariants:
- the kernel first checks every id against [0, n_instruments) and applies nothing if one is
  out of range (ValueError naming the first one);
- an instrument's k-th output (k from 0) equals the batch function's output at index k for
  that instrument's series, bit for bit, NaN during the warm-up; leading NaN values are
  skipped as the batch side (and TA-Lib's wrapper) skips them: they output NaN and do not count;
- O(1) work per update (Bollinger adds an O(n) window refresh every 32n updates or so,
  amortized O(1)); no allocation in the kernel; `out=` avoids the output allocation too;
- update_one(i, value, ...) is the one-value path: the same kernel, on one-slot arrays.
"""

from __future__ import annotations

import operator

import numpy as np

from microex.indicators.checks import as_ids, as_series, check_period, check_same_length


class Stream:
    """Base class. A subclass allocates its state arrays in __init__ (listing them in self._arrays
    so reset() clears them), names its inputs and outputs, and implements _run(ids, inputs, outs)
    as one call to its njit kernel, returning the kernel's bad-id index (-1 when all are valid)."""

    n_outputs = 1
    input_names: tuple[str, ...] = ("values",)

    def __init__(self, n_instruments: int):
        self.n_instruments = check_period(n_instruments, "n_instruments")
        self.count = np.zeros(self.n_instruments, np.int64)
        self._arrays: list[np.ndarray] = [self.count]
        # update_one() goes through the same kernel with these one-slot arrays
        self._one_id = np.zeros(1, np.int64)
        self._one_in = tuple(np.zeros(1) for _ in self.input_names)
        self._one_out = tuple(np.zeros(1) for _ in range(self.n_outputs))

    def _run(self, ids: np.ndarray, inputs: tuple, outs: tuple) -> int:
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------------

    def update(self, instrument_ids, *inputs, out=None):
        """Advance instrument ids[j] by the j-th value of each input (self.input_names, in that
        order), j in order; returns the outputs (one array, or a tuple of n_outputs arrays), one
        value per update. out=: arrays to write into instead of new ones."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{type(self).__name__}.update takes instrument_ids and "
                             f"{', '.join(self.input_names)}; got {len(inputs)} input array(s)")
        ids = as_ids(instrument_ids)
        arrays = tuple(as_series(s, name) for s, name in zip(inputs, self.input_names))
        check_same_length(instrument_ids=ids, **dict(zip(self.input_names, arrays)))
        outs = self._outs(len(ids), out)
        bad = self._run(ids, arrays, outs)
        if bad >= 0:
            raise ValueError(f"instrument id {int(ids[bad])} at position {bad} is outside "
                             f"[0, {self.n_instruments}); nothing was updated")
        return outs[0] if self.n_outputs == 1 else outs

    def update_one(self, instrument_id, *values):
        """One value (one of each input) for one instrument: a float, or a tuple of floats."""
        if len(values) != len(self.input_names):
            raise ValueError(f"{type(self).__name__}.update_one takes instrument_id and "
                             f"{', '.join(self.input_names)}; got {len(values)} value(s)")
        try:
            i = operator.index(instrument_id)
        except TypeError:
            raise ValueError(f"instrument id must be an integer, got {instrument_id!r}") from None
        if not 0 <= i < self.n_instruments:
            raise ValueError(f"instrument id {i} is outside [0, {self.n_instruments})")
        self._one_id[0] = i
        for buf, v in zip(self._one_in, values):
            buf[0] = v
        self._run(self._one_id, self._one_in, self._one_out)
        if self.n_outputs == 1:
            return float(self._one_out[0][0])
        return tuple(float(o[0]) for o in self._one_out)

    def reset(self, instrument_ids=None) -> None:
        """Forget the given instruments' history (all when None): they start their warm-up again."""
        if instrument_ids is None:
            for a in self._arrays:
                a.fill(0)
            return
        ids = as_ids(instrument_ids)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_instruments):
            raise ValueError(f"instrument ids must be in [0, {self.n_instruments})")
        for a in self._arrays:
            a[ids] = 0

    def _outs(self, m: int, out) -> tuple:
        if out is None:
            return tuple(np.empty(m) for _ in range(self.n_outputs))
        outs = (out,) if self.n_outputs == 1 else tuple(out)
        if len(outs) != self.n_outputs:
            raise ValueError(f"out must be {self.n_outputs} arrays, got {len(outs)}")
        for o in outs:
            if not (isinstance(o, np.ndarray) and o.dtype == np.float64 and o.ndim == 1
                    and o.flags.c_contiguous and o.flags.writeable and len(o) == m):
                raise ValueError(f"out must be writeable C-contiguous 1-D float64 arrays of length {m}")
        return outs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_instruments={self.n_instruments})"

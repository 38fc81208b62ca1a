"""Price and size increments inferred from recorded values, when product metadata is not given.

The increment is the largest step of the form {1, 2, 2.5, 5} × 10^e that divides every value
seen (up to float noise). With a day of quotes this is the venue's tick (or lot) in practice;
it can come out too large only if every recorded price happens to sit on a coarser grid, so the
scripts print what they inferred and accept ``--tick`` / ``--lot`` to override it.

Pure numpy; no I/O.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

MANTISSAS = (5.0, 2.5, 2.0, 1.0)
MAX_VALUES = 200_000
ABS_TOL = 1e-6  # in units of the candidate step
REL_TOL = 1e-12  # float noise grows with the ratio


def infer_step(values: npt.ArrayLike, smallest: float = 1e-12) -> float | None:
    """Largest {1, 2, 2.5, 5}·10^e dividing all non-zero values; None without values."""
    v = np.unique(np.abs(np.asarray(values, dtype=np.float64)))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return None
    if v.size > MAX_VALUES:
        v = v[np.linspace(0, v.size - 1, MAX_VALUES).astype(np.int64)]
    e = math.floor(math.log10(float(v.max())))
    while 10.0**e >= smallest:
        for mant in MANTISSAS:
            step = mant * 10.0**e
            ratio = v / step
            if np.all(np.abs(ratio - np.round(ratio)) <= ABS_TOL + REL_TOL * ratio):
                return float(f"{step:.12g}")
        e -= 1
    return None


def to_units(values: npt.ArrayLike, step: float) -> npt.NDArray[np.int64]:
    """Values as integer multiples of ``step`` (nearest)."""
    return np.rint(np.asarray(values, dtype=np.float64) / step).astype(np.int64)

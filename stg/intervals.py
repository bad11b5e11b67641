"""95% intervals for the figures of many videos: a share (Wilson score) and a mean (normal approximation).

The Wilson interval stays inside [0, 1] and does not collapse to a point at 0% or 100% as the normal approximation
does: 5 right of 5 gives 56.6% to 100% (Wilson, "Probable inference, the law of succession, and statistical
inference", JASA 1927; the same formula as `statsmodels.stats.proportion.proportion_confint(method="wilson")`).
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.96


def share(hits) -> tuple[float, float, float]:
    """The share of true values and its 95% Wilson interval (low, high); NaNs when there are none."""
    hits = [bool(h) for h in hits]
    n = len(hits)
    if not n:
        return math.nan, math.nan, math.nan
    p = sum(hits) / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return p, max(0.0, centre - half), min(1.0, centre + half)


def mean(values) -> tuple[float, float, float]:
    """Mean, standard deviation and 95% half-width of the mean over the measured values (None: not measured)."""
    data = np.array([v for v in values if v is not None], dtype=np.float64)
    if not len(data):
        return math.nan, math.nan, math.nan
    sd = float(data.std(ddof=1)) if len(data) > 1 else 0.0
    return float(data.mean()), sd, Z95 * sd / math.sqrt(len(data))

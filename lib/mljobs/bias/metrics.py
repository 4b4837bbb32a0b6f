"""SageMaker Clarify's bias metrics as functions of counts (no Spark, no rows).

The definitions follow smclarify 0.5 (``smclarify.bias.metrics``), the library behind
Clarify's bias analysis, including its conventions: ``divide(0, 0) = 0`` and
``divide(x > 0, 0) = inf``; a difference of two infinite rates is 0; the label distributions
of KL, JS, LP, TVD and KS keep only the label values both groups have (not renormalised);
CDDL/CDDPL weight each subgroup by its size and check for positive and negative labels over
all rows. ``a`` is the rest (advantaged), ``d`` the sensitive group (facet value). A metric
smclarify cannot compute raises ``Undefined`` with its reason.

``Counts`` holds the cells of one grouped aggregation: (sensitive, label positive, predicted
positive or None, subgroup or None) -> rows.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

INF = float("inf")

DESCRIPTIONS = {
    "CI": "Class Imbalance (CI)",
    "DPL": "Difference in Positive Proportions in Labels (DPL)",
    "KL": "Kullback-Liebler Divergence (KL)",  # Clarify's spelling
    "JS": "Jensen-Shannon Divergence (JS)",
    "LP": "L-p Norm (LP)",
    "TVD": "Total Variation Distance (TVD)",
    "KS": "Kolmogorov-Smirnov Distance (KS)",
    "CDDL": "Conditional Demographic Disparity in Labels (CDDL)",
    "DPPL": "Difference in Positive Proportions in Predicted Labels (DPPL)",
    "DI": "Disparate Impact (DI)",
    "DCA": "Difference in Conditional Acceptance (DCA)",
    "DCR": "Difference in Conditional Rejection (DCR)",
    "RD": "Recall Difference (RD)",
    "SD": "Specificity Difference (SD)",
    "DAR": "Difference in Acceptance Rates (DAR)",
    "DRR": "Difference in Rejection Rates (DRR)",
    "AD": "Accuracy Difference (AD)",
    "CDDPL": "Conditional Demographic Disparity in Predicted Labels (CDDPL)",
    "TE": "Treatment Equality (TE)",
    "FT": "Flip Test (FT)",
    "GE": "Generalized Entropy (GE)",
}


class Undefined(ValueError):
    """The metric has no value on these counts (an empty group, no common label value ...)."""


class Counts:
    """Row counts by (sensitive, y, yhat, group); ``n(...)`` sums the matching cells."""

    def __init__(self, cells: Iterable[tuple[bool, bool, bool | None, object, int]]):
        self.cells = [(bool(s), bool(y), p, g, int(n)) for s, y, p, g, n in cells]

    def n(self, s: bool | None = None, y: bool | None = None, p: bool | None = None, g=...) -> int:
        return sum(c[4] for c in self.cells
                   if (s is None or c[0] == s) and (y is None or c[1] == y) and (p is None or c[2] == p)
                   and (g is ... or c[3] == g))

    def groups(self) -> list:
        """The subgroups (nulls left out, as smclarify's comparisons leave them), sorted."""
        return sorted({c[3] for c in self.cells if c[3] is not None})


def divide(a: float, b: float) -> float:
    if b == 0:
        return 0.0 if a == 0 else (INF if a > 0 else -INF)
    return a / b


def _diff(x: float, y: float) -> float:
    """x - y, 0 when both are infinite (smclarify's rule for rates of empty groups)."""
    return 0 if x == y == INF else x - y


def _both_groups(c: Counts) -> None:
    if c.n(s=True) == 0:
        raise Undefined("facet set is empty (no rows with the facet value)")
    if c.n(s=False) == 0:
        raise Undefined("negated facet set is empty (every row has the facet value)")


def CI(c: Counts) -> float:
    _both_groups(c)
    na, nd = c.n(s=False), c.n(s=True)
    return float(na - nd) / (na + nd)


def _dpl(c: Counts, key: str) -> float:
    _both_groups(c)
    pos = {key: True}
    return c.n(s=False, **pos) / c.n(s=False) - c.n(s=True, **pos) / c.n(s=True)


def DPL(c: Counts) -> float:
    return _dpl(c, "y")


def _aligned(c: Counts) -> tuple[list[float], list[float]]:
    """The label distributions of a and d over the label values with a non-zero share in both."""
    na, nd = c.n(s=False), c.n(s=True)
    pa, pd_ = [], []
    for y in (False, True):  # sorted keys, as smclarify's pdf
        a = c.n(s=False, y=y) / na if na else 0.0
        d = c.n(s=True, y=y) / nd if nd else 0.0
        if a != 0 and d != 0:
            pa.append(a)
            pd_.append(d)
    if not pa:
        raise Undefined("no label value common to both groups (a group is empty or the dataset too small)")
    return pa, pd_


def KL(c: Counts) -> float:
    pa, pd_ = _aligned(c)
    return sum(a * math.log(a / d) for a, d in zip(pa, pd_))


def JS(c: Counts) -> float:
    pa, pd_ = _aligned(c)
    mid = [0.5 * (a + d) for a, d in zip(pa, pd_)]
    return 0.5 * (sum(a * math.log(a / m) for a, m in zip(pa, mid)) + sum(d * math.log(d / m) for d, m in zip(pd_, mid)))


def LP(c: Counts) -> float:
    pa, pd_ = _aligned(c)
    return math.sqrt(sum((a - d) ** 2 for a, d in zip(pa, pd_)))


def TVD(c: Counts) -> float:
    pa, pd_ = _aligned(c)
    return 0.5 * sum(abs(a - d) for a, d in zip(pa, pd_))


def KS(c: Counts) -> float:
    pa, pd_ = _aligned(c)
    return max(abs(a - d) for a, d in zip(pa, pd_))


def _cdd(c: Counts, key: str, grouped: bool) -> float:
    """Conditional demographic disparity of the label (key 'y') or the prediction ('p')."""
    if not grouped:
        raise Undefined("needs --group-by COL (the subgroups)")
    if c.n(**{key: True}) == 0:
        raise Undefined("no positive labels in the set")
    if c.n(**{key: False}) == 0:
        raise Undefined("no negative labels in the set")
    total, weighted = 0, 0.0
    for g in c.groups():
        pos, neg = {key: True}, {key: False}
        a_den, d_den = c.n(g=g, **pos), c.n(g=g, **neg)
        accepted = c.n(s=True, g=g, **pos) / a_den if a_den else 0
        rejected = c.n(s=True, g=g, **neg) / d_den if d_den else 0
        size = c.n(g=g)
        total += size
        weighted += size * (rejected - accepted)
    return divide(weighted, total)


def DPPL(c: Counts) -> float:
    return _dpl(c, "p")


def DI(c: Counts) -> float:
    _both_groups(c)
    return divide(c.n(s=True, p=True) / c.n(s=True), c.n(s=False, p=True) / c.n(s=False))


def DCA(c: Counts) -> float:
    _both_groups(c)
    return _diff(divide(c.n(s=False, y=True), c.n(s=False, p=True)), divide(c.n(s=True, y=True), c.n(s=True, p=True)))


def DCR(c: Counts) -> float:
    _both_groups(c)
    rr_a = divide(c.n(s=False, y=False), c.n(s=False, p=False))
    rr_d = divide(c.n(s=True, y=False), c.n(s=True, p=False))
    return 0 if rr_a == rr_d == INF else rr_d - rr_a


def _rate(c: Counts, s: bool, y: bool, p: bool, of: str) -> float:
    """TP/n1hat, TN/n0hat (of='p') or TP/(TP+FN), TN/(TN+FP) (of='y') within group s."""
    den = c.n(s=s, p=p) if of == "p" else c.n(s=s, y=y)
    return divide(c.n(s=s, y=y, p=p), den)


def RD(c: Counts) -> float:
    _both_groups(c)
    return _diff(_rate(c, False, True, True, "y"), _rate(c, True, True, True, "y"))


def SD(c: Counts) -> float:
    _both_groups(c)
    sp_a, sp_d = _rate(c, False, False, False, "y"), _rate(c, True, False, False, "y")
    return 0 if sp_a == sp_d == INF else sp_d - sp_a


def DAR(c: Counts) -> float:
    _both_groups(c)
    return _diff(_rate(c, False, True, True, "p"), _rate(c, True, True, True, "p"))


def DRR(c: Counts) -> float:
    _both_groups(c)
    rr_a, rr_d = _rate(c, False, False, False, "p"), _rate(c, True, False, False, "p")
    return 0 if rr_a == rr_d == INF else rr_d - rr_a


def AD(c: Counts) -> float:
    _both_groups(c)
    acc = [divide(c.n(s=s, y=True, p=True) + c.n(s=s, y=False, p=False), c.n(s=s)) for s in (False, True)]
    return 0.0 if acc[0] == acc[1] == INF else acc[0] - acc[1]


def TE(c: Counts) -> float:
    _both_groups(c)
    tau = [divide(c.n(s=s, y=True, p=False), c.n(s=s, y=False, p=True)) for s in (False, True)]
    return 0.0 if tau[0] == tau[1] == INF else tau[1] - tau[0]


def GE(c: Counts) -> float:
    """Generalized entropy (alpha 2) of the benefit yhat - y + 1 over all rows."""
    n = c.n()
    if n == 0:
        raise Undefined("dataset must be non-empty")
    by_benefit = {0: c.n(y=True, p=False), 1: c.n(y=True, p=True) + c.n(y=False, p=False), 2: c.n(y=False, p=True)}
    mean = (by_benefit[1] + 2 * by_benefit[2]) / n
    if mean == 0:
        raise Undefined("all predicted labels are false negatives; there should be at least one that is not")
    return sum(k * ((b / mean) ** 2 - 1) for b, k in by_benefit.items()) / (n * 2 * (2 - 1))


FUNCTIONS: dict[str, Callable[[Counts], float]] = {
    "CI": CI, "DPL": DPL, "KL": KL, "JS": JS, "LP": LP, "TVD": TVD, "KS": KS,
    "DPPL": DPPL, "DI": DI, "DCA": DCA, "DCR": DCR, "RD": RD, "SD": SD, "DAR": DAR, "DRR": DRR,
    "AD": AD, "TE": TE, "GE": GE,
}


def compute(name: str, counts: Counts, grouped: bool) -> tuple[float | None, str | None]:
    """(value, None), or (None, reason) when the metric is undefined on these counts."""
    try:
        if name in ("CDDL", "CDDPL"):
            return float(_cdd(counts, "y" if name == "CDDL" else "p", grouped)), None
        return float(FUNCTIONS[name](counts)), None
    except Undefined as exc:
        return None, f"{name}: {exc}"

"""FT, the flip test, as smclarify 0.5 computes it, distributed: a k-nearest-neighbours vote
(k = 5, or 1 when the rest has at most 9 rows; Euclidean distance, uniform weights) of the
rest's predicted labels, for each row of the sensitive group; FT = (rows the model predicts
positive and the vote negative - rows the other way round) / rows of the group.

One pass for every facet value at once: the groups' rows (at most ``sample`` per group, a
seeded sample beyond) are broadcast; each task finds, for every group row, the K nearest of its
own rows outside that group *and how many more lie exactly at the K-th distance* (with their
positive labels): a KD-tree over the task's distinct rows per group proposes the candidates, and
their exact squared distances decide. The tasks' states are merged pairwise (``treeReduce``),
so only about 2K + 3 numbers per group row reach the driver, whatever the table's size.

Ties: when several rows of the rest lie exactly at the k-th distance, scikit-learn's kNN (and
so smclarify's FT) takes as many of them as it needs in its tree's internal order, an accident
of how the tree was built. We average the vote over every choice of the tied rows instead (each
of the n rows at the k-th distance carries weight need / n, need = k - the rows nearer), so the
vote is the one scikit-learn gives whenever the choice cannot change it; an exactly even vote is
negative (scikit-learn's mode picks the smaller class). A row is *tied* when some choice of the
tied rows would give the other label; ``Flip.tied`` counts them, so |ours - smclarify's| <=
tied / voted, and with no tied row the two are equal.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mljobs.bias.metrics import divide

FEW_ROWS, K_FEW, K = 9, 1, 5  # smclarify's FT_SAMPLES_COUNT_THRESHOLD, FT_MIN_NEIGHBOR, FT_DEFAULT_NEIGHBOR
SEED = 20240
QUERY_CHUNK = 4096  # group rows per KD-tree query in a task


@dataclass(frozen=True)
class Flip:
    """FT of one sensitive group: its value (None with the reason when undefined), the rows
    voted on and how many of those votes the tie rule decided."""
    value: float | None
    error: str | None = None
    voted: int = 0
    tied: int = 0


def _kernels(k_max: int):
    """(task body, state merge). A state, per group row (columns): the ``k_max`` smallest
    distances seen and their labels, the k_max-th distance ``t`` and the count and positives of
    the other rows seen exactly at ``t``."""
    def merge(a, b):
        dist, lab = np.vstack([a[0], b[0]]), np.vstack([a[1], b[1]])
        idx = np.argpartition(dist, k_max - 1, axis=0)[:k_max]
        kd, kl = np.take_along_axis(dist, idx, 0), np.take_along_axis(lab, idx, 0)
        t = kd.max(axis=0)
        at, kept_at = dist == t, kd == t
        cnt = at.sum(0) - kept_at.sum(0)
        pos = (at & (lab == 1)).sum(0) - (kept_at & (kl == 1)).sum(0)
        for s in (a, b):  # rows seen at t before, left out of the kept ones
            same = s[2] == t
            cnt, pos = cnt + np.where(same, s[3], 0), pos + np.where(same, s[4], 0)
        finite = np.isfinite(t)
        return kd, kl, t, np.where(finite, cnt, 0), np.where(finite, pos, 0)

    def state_of(rows, sq, lab, w, nq):
        """The state of nq query rows from their candidates (query row, squared distance, label,
        multiplicity): the k_max nearest units, and the units more at the k_max-th distance."""
        o = np.lexsort((sq, rows))
        rows, sq, lab, w = rows[o], sq[o], lab[o], w[o]
        cw = np.cumsum(w)
        before = cw - w - np.concatenate([[0], cw])[np.searchsorted(rows, rows)]
        units = np.clip(k_max - before, 0, w)
        e = np.repeat(np.arange(len(rows)), units)
        er = rows[e]
        slot = np.arange(len(e)) - np.searchsorted(er, er)
        kd, kl = np.full((k_max, nq), np.inf), np.zeros((k_max, nq), dtype=np.int8)
        kd[slot, er], kl[slot, er] = sq[e], lab[e]
        t = kd[k_max - 1]
        extra = np.where(sq == t[rows], w - units, 0)
        cnt = np.bincount(rows, weights=extra, minlength=nq).astype(np.int64)
        pos = np.bincount(rows, weights=extra * (lab == 1), minlength=nq).astype(np.int64)
        return kd, kl, t, cnt, pos

    def nearest_in(x, p, queries):
        """The state of ``queries`` among the rows (x, p): a KD-tree over the distinct rows finds
        the candidates (the k_max nearest and all within that radius, a margin for the tree's
        rounding); their exact squared distances decide."""
        from sklearn.neighbors import KDTree
        u, w = np.unique(np.column_stack([x, p]), axis=0, return_counts=True)
        pts, lab = np.ascontiguousarray(u[:, :-1]), u[:, -1].astype(np.int8)
        tree = KDTree(pts)
        parts = []
        for lo in range(0, len(queries), QUERY_CHUNK):
            q = queries[lo:lo + QUERY_CHUNK]
            r = tree.query(q, k=min(k_max, len(pts)))[0][:, -1]
            ind = tree.query_radius(q, r * (1 + 1e-9) + 1e-12)
            rows = np.repeat(np.arange(len(q)), [len(i) for i in ind])
            cand = np.concatenate(ind).astype(np.int64)
            sq = ((q[rows] - pts[cand]) ** 2).sum(axis=1)
            parts.append(state_of(rows, sq, lab[cand], w[cand], len(q)))
        return [np.concatenate(c, axis=-1) for c in zip(*parts)]

    def body(bc):
        def nearest(batches):
            import pyarrow as pa
            xd, gd = bc.value
            got = list(batches)
            table = pa.Table.from_batches(got) if got else None
            state = [np.full((k_max, len(xd)), np.inf), np.zeros((k_max, len(xd)), dtype=np.int8),
                     np.full(len(xd), np.inf), np.zeros(len(xd), dtype=np.int64), np.zeros(len(xd), dtype=np.int64)]
            if table is not None and table.num_rows:
                g, p = (table.column(i).to_numpy() for i in (0, 1))
                x = np.column_stack([table.column(i).to_numpy().astype(np.float64)
                                     for i in range(2, table.num_columns)])
                for grp in np.unique(gd):
                    cols, rest = np.flatnonzero(gd == grp), g != grp  # a group's own rows are not its rest
                    if rest.any():
                        for part, arr in zip(state, nearest_in(x[rest], p[rest], xd[cols])):
                            part[..., cols] = arr
            yield pa.RecordBatch.from_pydict({"state": [pickle.dumps(tuple(state), protocol=5)]})
        return nearest

    return body, merge


def _vote(kd: np.ndarray, kl: np.ndarray, t: np.ndarray, cnt: np.ndarray, pos: np.ndarray, k: int):
    """(the votes of group rows, whether the tie rule decided each) from their states (columns)."""
    o = np.argsort(kd, axis=0, kind="stable")
    kd, kl = np.take_along_axis(kd, o, 0), np.take_along_axis(kl, o, 0) == 1
    k = np.minimum(k, np.isfinite(kd).sum(axis=0))
    tk = kd[k - 1, np.arange(kd.shape[1])]
    below, at, more = kd < tk, kd == tk, tk == t
    n_lt, p_lt = below.sum(0), (below & kl).sum(0)
    n_at, p_at = at.sum(0) + np.where(more, cnt, 0), (at & kl).sum(0) + np.where(more, pos, 0)
    need = k - n_lt  # a k-neighbour vote takes `need` of the n_at rows at the k-th distance
    vote = 2 * (p_lt * n_at + need * p_at) > k * n_at  # the vote averaged over every choice of them
    lo, hi = p_lt + np.maximum(0, need - (n_at - p_at)), p_lt + np.minimum(need, p_at)
    return vote, (2 * lo > k) != (2 * hi > k)


def _group_rows(rows: DataFrame, sizes: dict[int, int], groups: list[int], sample: int, feats: list[str]):
    """The voted rows of every group (a seeded sample of ``sample`` rows beyond): features,
    group index, model label."""
    d = rows.where(F.col("_g").isin(groups))
    if any(sizes[g] > sample for g in groups):
        d = d.sampleBy("_g", {g: min(1.0, 1.2 * sample / sizes[g]) for g in groups}, seed=SEED)
    got: dict[int, list] = {g: [] for g in groups}
    for r in d.collect():
        if len(got[r["_g"]]) < sample:
            got[r["_g"]].append(r)
    flat = [r for g in groups for r in got[g]]
    return (np.array([[r[f] for f in feats] for r in flat], dtype=np.float64).reshape(len(flat), len(feats)),
            np.array([r["_g"] for r in flat], dtype=np.int64), np.array([r["_p"] for r in flat], dtype=bool))


def flip_tests(df: DataFrame, sensitives: list[Column], yhat: Column, features: list[str], sample: int) -> list[Flip]:
    """FT of every sensitive group (``sensitives``: disjoint predicates over ``df``'s rows),
    each against all rows outside it, over ``features`` (numeric; rows with a null skipped)."""
    if not features:
        why = "the flip test needs numeric feature columns (none left beside facet and labels)"
        return [Flip(None, why) for _ in sensitives]
    feats = [f"_x{i}" for i in range(len(features))]
    g = F.lit(-1)
    for i in reversed(range(len(sensitives))):
        g = F.when(sensitives[i], F.lit(i)).otherwise(g)
    rows = df.select(g.alias("_g"), yhat.cast("int").alias("_p"),
                     *[F.col(f"`{c}`").cast("double").alias(n) for c, n in zip(features, feats)])
    complete = " AND ".join(f"{n} IS NOT NULL AND NOT isnan({n})" for n in feats)
    rows = rows.where(F.col("_p").isNotNull() & F.expr(complete))
    sizes = {int(r["_g"]): int(r["n"]) for r in rows.groupBy("_g").agg(F.count(F.lit(1)).alias("n")).collect()}
    total = sum(sizes.values())
    out: dict[int, Flip] = {}
    for i in range(len(sensitives)):
        if not sizes.get(i):
            out[i] = Flip(None, "facet set is empty (no rows with the facet value and complete features)")
        elif total == sizes[i]:
            out[i] = Flip(None, "negated facet set is empty")
    groups = [i for i in range(len(sensitives)) if i not in out]
    if groups:
        out.update(_votes(rows, sizes, total, groups, sample, feats))
    return [out[i] for i in range(len(sensitives))]


def _votes(rows: DataFrame, sizes: dict[int, int], total: int, groups: list[int], sample: int,
           feats: list[str]) -> dict:
    """{group: Flip} of the given groups, in one pass over ``rows``."""
    xd, gd, model = _group_rows(rows, sizes, groups, sample, feats)
    body, merge = _kernels(K)
    sc = rows.sparkSession.sparkContext
    bc = sc.broadcast((xd, gd))
    try:
        states = (rows.select("_g", "_p", *feats).mapInArrow(body(bc), "state binary")
                  .rdd.map(lambda r: pickle.loads(r[0])))
        kd, kl, t, cnt, pos = states.treeReduce(merge, depth=2)
    finally:
        bc.destroy()
    out = {}
    for grp in groups:
        k = K if total - sizes[grp] > FEW_ROWS else K_FEW
        cols = np.flatnonzero(gd == grp)
        knn, tied = _vote(kd[:, cols], kl[:, cols], t[cols], cnt[cols], pos[cols], k)
        m = model[cols]
        ft = divide(int((m & ~knn).sum()) - int((~m & knn).sum()), len(cols))
        out[grp] = Flip(float(ft), None, len(cols), int(tied.sum()))
    return out

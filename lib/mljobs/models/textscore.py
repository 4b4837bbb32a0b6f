"""Scoring with a train-text model in Python workers, a whole Arrow batch at a time.

predict-text runs the model's tokenizer stage in the JVM (Java's regular expression and
lower-casing, as in training) and hands each Arrow batch of token lists to ``score_fn``; the
rest of the pipeline — word n-grams, HashingTF or CountVectorizer + IDF or Word2Vec, the
logistic regression's probabilities — is re-done here with Arrow compute and numpy over the
batch at once. Spark ML runs those stages row by row on JVM objects; HashingTF alone was half
of predict-text's CPU (docs/benchmarks.md#text).

Equal to the pipeline's own ``transform`` (tests/test_textscore.py compares them on real
snippets, every algorithm, two and three classes): the same hash (MurmurHash3 x86_32 of the
UTF-8 bytes, seed 42, non-negative modulo: Spark 3's HashingTF), the same n-grams, term counts,
``minTF`` and IDF weights, and each margin summed in the sparse vector's order, as Spark's dot
product does. Probabilities can differ in the last bit where the C library's ``exp`` and Java's
do. ``plan`` returns None for a pipeline of any other shape; predict-text then scores with
Spark ML itself.

This module is shipped to the workers by value (``modelcache.ship_by_value``); what it takes
from mljobs.models.text is column names, carried as plain strings.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
from dataclasses import dataclass, field

import numpy as np

from mljobs import modelcache
from mljobs.models.text import FEATURES, TERMS, TOKENS

SEED = 42  # Spark ML HashingTF's MurmurHash3 seed
_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)


@dataclass
class TextScorer:
    """What scoring needs of a fitted pipeline after its tokens, as plain arrays (pickled once,
    loaded once per Python worker)."""
    kind: str                      # "hash" | "vocab" | "w2v"
    coef: np.ndarray               # classes (1 when binomial) x features
    intercept: np.ndarray
    multinomial: bool
    ngrams: tuple[int, ...] = ()   # word n-gram orders appended to the tokens
    num_features: int = 0          # hash
    binary: bool = False           # hash, vocab
    min_tf: float = 1.0            # vocab
    idf: np.ndarray | None = None  # vocab
    terms: list[str] = field(default_factory=list)   # vocab: the vocabulary; w2v: the words
    vectors: np.ndarray | None = None                # w2v: float32 words x dim

    def probabilities(self, tokens) -> np.ndarray:
        """rows x classes probabilities of an Arrow list<string> array of token lists."""
        n = len(tokens)
        flat, rows = flatten(tokens)
        if self.kind == "w2v":
            margins = self._dense_margins(self._mean_vectors(flat, rows, n))
        else:
            terms, term_rows = with_ngrams(flat, rows, self.ngrams)
            margins = self._sparse_margins(*self._features(terms, term_rows, n), n)
        return probabilities(margins, self.multinomial)

    def _features(self, terms, term_rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, value) of the nonzero features, sorted by row then column."""
        import pyarrow.compute as pc

        if self.kind == "hash":
            enc = pc.dictionary_encode(terms)
            cols = bucket_index(enc.dictionary, self.num_features)[enc.indices.to_numpy(zero_copy_only=False)]
            width, keep = self.num_features, slice(None)
        else:
            found = pc.index_in(terms, value_set=self._vocab())
            keep = found.is_valid().to_numpy(zero_copy_only=False)
            cols, width = found.to_numpy(zero_copy_only=False)[keep].astype(np.int64), len(self.terms)
        keys, counts = np.unique(term_rows[keep] * width + cols, return_counts=True)
        r, c, x = keys // width, keys % width, counts.astype(np.float64)
        if self.kind == "vocab":
            per_row = np.bincount(term_rows, minlength=n)  # every term, known or not (CountVectorizer's)
            least = np.full(n, self.min_tf) if self.min_tf >= 1.0 else per_row * self.min_tf
            kept = x >= least[r]
            r, c, x = r[kept], c[kept], x[kept]
        if self.binary:
            x = np.ones_like(x)
        if self.idf is not None:
            x = x * self.idf[c]
        return r, c, x

    def _sparse_margins(self, r: np.ndarray, c: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
        """coef . x + intercept per class; each row's sum runs in column order from 0, as Spark's."""
        return np.stack([np.bincount(r, weights=x * w[c], minlength=n) + b
                         for w, b in zip(self.coef, self.intercept)], axis=1)

    def _mean_vectors(self, flat, rows: np.ndarray, n: int) -> np.ndarray:
        """Word2VecModel's feature: the sum of the known words' vectors / the number of words."""
        import pyarrow.compute as pc

        found = pc.index_in(flat, value_set=self._vocab())
        known = found.is_valid().to_numpy(zero_copy_only=False)
        idx = found.to_numpy(zero_copy_only=False)[known].astype(np.int64)
        out = np.zeros((n, self.vectors.shape[1]))
        at = rows[known]
        if len(at):
            starts = np.flatnonzero(np.r_[True, at[1:] != at[:-1]])
            out[at[starts]] = np.add.reduceat(self.vectors[idx].astype(np.float64), starts, axis=0)
        words = np.bincount(rows, minlength=n)
        has = words > 0
        out[has] *= (1.0 / words[has])[:, None]
        return out

    def _dense_margins(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef.T + self.intercept

    def _vocab(self):
        import pyarrow as pa

        if getattr(self, "_arrow_terms", None) is None:
            self._arrow_terms = pa.array(self.terms, pa.string())
        return self._arrow_terms


# ---- the batch arithmetic
def flatten(tokens) -> tuple:
    """(every token, the row of each) of a list<string> array; a NULL list has no tokens."""
    import pyarrow as pa

    tokens = tokens.fill_null(pa.scalar([], tokens.type)) if tokens.null_count else tokens
    lengths = np.asarray(tokens.value_lengths().to_numpy(zero_copy_only=False), dtype=np.int64)
    return tokens.flatten(), np.repeat(np.arange(len(tokens), dtype=np.int64), lengths)


def with_ngrams(flat, rows: np.ndarray, orders: tuple[int, ...]) -> tuple:
    """The tokens followed by their word n-grams of each order (NGram's: n tokens of one row
    joined by a space, none for a row shorter than n); the row of each term."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts, part_rows = [flat], [rows]
    for n in orders:
        m = len(flat) - n + 1
        if m <= 0:
            continue
        same = rows[:m] == rows[n - 1:]
        grams = pc.binary_join_element_wise(*[flat.slice(j, m) for j in range(n)], " ").filter(pa.array(same))
        parts.append(grams)
        part_rows.append(rows[:m][same])
    return pa.concat_arrays([p.cast(pa.string()) for p in parts]), np.concatenate(part_rows)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _mix_k(k: np.ndarray) -> np.ndarray:
    return _rotl(k * _C1, 15) * _C2


def murmur3_32(strings, seed: int = SEED) -> np.ndarray:
    """MurmurHash3 x86_32 of each string's UTF-8 bytes, as int32 (Spark's hashUnsafeBytes2)."""
    import pyarrow as pa

    strings = strings.cast(pa.large_string())
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[strings.offset:strings.offset + n + 1]
    data_buf = strings.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    blocks = lengths // 4
    h = np.full(n, seed, dtype=np.uint32)
    order = np.argsort(-blocks, kind="stable")  # the strings with more than b blocks: a prefix of order
    desc = -blocks[order]
    ends = np.searchsorted(desc, -np.arange(1, int(blocks.max(initial=0)) + 1), side="right")
    for b, end in enumerate(ends):
        at = order[:end]
        p = starts[at] + 4 * b
        k = (data[p].astype(np.uint32) | (data[p + 1].astype(np.uint32) << np.uint32(8))
             | (data[p + 2].astype(np.uint32) << np.uint32(16)) | (data[p + 3].astype(np.uint32) << np.uint32(24)))
        x = _rotl(h[at] ^ _mix_k(k), 13)
        h[at] = x * np.uint32(5) + np.uint32(0xE6546B64)
    tail, k = lengths % 4, np.zeros(n, dtype=np.uint32)
    at_tail = starts + 4 * blocks
    for j in range(3):
        m = tail > j
        k[m] ^= data[at_tail[m] + j].astype(np.uint32) << np.uint32(8 * j)
    h ^= _mix_k(k)
    h ^= lengths.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h.view(np.int32)


def bucket_index(strings, num_features: int) -> np.ndarray:
    """HashingTF's column of each term: the hash's non-negative remainder by ``num_features``."""
    return np.mod(murmur3_32(strings).astype(np.int64), num_features)


def probabilities(margins: np.ndarray, multinomial: bool) -> np.ndarray:
    """LogisticRegressionModel's probability vector from its margins (raw2probabilityInPlace)."""
    if not multinomial:
        m = margins[:, 0]
        return np.stack([1.0 / (1.0 + np.exp(m)), 1.0 / (1.0 + np.exp(-m))], axis=1)
    top = margins.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(np.where(top > 0, margins - top, margins))
        p = e * (1.0 / e.sum(axis=1, keepdims=True))
    inf = np.isposinf(top[:, 0])
    if inf.any():
        p[inf] = np.eye(margins.shape[1])[margins[inf].argmax(axis=1)]
    return p


# ---- the pipeline, on the driver
def plan(model) -> tuple | None:
    """(the pipeline of the stages that make ``_tokens``, its TextScorer) of a fitted text
    PipelineModel, or None when its stages are not the ones train-text writes."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import IndexToString, NGram, RegexTokenizer, SQLTransformer

    stages = [s for s in model.stages if not isinstance(s, IndexToString)]
    if len(stages) < 3 or not isinstance(stages[-1], LogisticRegressionModel):
        return None
    tok, lr = stages[0], stages[-1]
    if not (isinstance(tok, RegexTokenizer) and tok.getOutputCol() == TOKENS
            or isinstance(tok, SQLTransformer) and f"AS `{TOKENS}` FROM __THIS__" in tok.getStatement()):
        return None
    middle = stages[1:-1]
    grams = [s for s in middle if isinstance(s, NGram)]
    if any(s.getInputCol() != TOKENS or s.getOutputCol() != f"_ngrams{s.getN()}" for s in grams):
        return None
    rest = [s for s in middle if not isinstance(s, NGram)]
    names = ", ".join([f"`{TOKENS}`", *[f"`{s.getOutputCol()}`" for s in grams]])
    concat = f"SELECT *, concat({names}) AS `{TERMS}` FROM __THIS__"
    if rest and isinstance(rest[0], SQLTransformer):
        if rest[0].getStatement() != concat:
            return None
        rest = rest[1:]
    elif grams:
        return None
    if lr.getFeaturesCol() != FEATURES:
        return None
    features = _features_of(rest, tuple(s.getN() for s in grams))
    if features is None:
        return None
    coef = lr.coefficientMatrix.toArray().astype(np.float64)
    scorer = TextScorer(coef=coef, intercept=lr.interceptVector.toArray().astype(np.float64),
                        multinomial=coef.shape[0] > 1, **features)
    return PipelineModel(stages=[tok]), scorer


def _features_of(stages: list, ngrams: tuple[int, ...]) -> dict | None:
    """The TextScorer fields of the feature stages, or None when they are not train-text's."""
    from pyspark.ml.feature import CountVectorizerModel, HashingTF, IDFModel, Word2VecModel

    first = stages[0] if stages else None
    if len(stages) == 1 and isinstance(first, HashingTF) and first.getInputCol() == TERMS \
            and first.getOutputCol() == FEATURES:
        return {"kind": "hash", "ngrams": ngrams, "num_features": first.getNumFeatures(), "binary": first.getBinary()}
    if len(stages) == 2 and isinstance(first, CountVectorizerModel) and isinstance(stages[1], IDFModel) \
            and first.getInputCol() == TERMS and stages[1].getInputCol() == first.getOutputCol() \
            and stages[1].getOutputCol() == FEATURES:
        return {"kind": "vocab", "ngrams": ngrams, "binary": first.getBinary(), "min_tf": float(first.getMinTF()),
                "idf": stages[1].idf.toArray().astype(np.float64), "terms": list(first.vocabulary)}
    if len(stages) == 1 and isinstance(first, Word2VecModel) and not ngrams \
            and first.getInputCol() == TOKENS and first.getOutputCol() == FEATURES:
        rows = first.getVectors().collect()
        vectors = np.array([r["vector"].toArray() for r in rows], dtype=np.float32).reshape(len(rows), -1)
        return {"kind": "w2v", "terms": [r["word"] for r in rows], "vectors": vectors}
    return None


def score(df, scorer: TextScorer, passthrough: list[str], probs_col: str):
    """``passthrough`` + ``probs_col`` (array<double>, the classes in the model's order) per row of
    ``df``, which has the passthrough columns and ``_tokens``."""
    from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

    blob = pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL)
    key = hashlib.sha256(blob).hexdigest()
    modelcache.ship_by_value(sys.modules[__name__])
    bc = df.sparkSession.sparkContext.broadcast(blob)
    schema = StructType([df.schema[c] for c in passthrough] + [StructField(probs_col, ArrayType(DoubleType()))])
    return df.select(*[f"`{c}`" for c in passthrough], TOKENS).mapInArrow(
        score_fn(key, bc, passthrough, probs_col), schema)


def score_fn(key: str, blob_bc, passthrough: list[str], probs_col: str):
    """mapInArrow function: the passthrough columns as they came + the probabilities."""
    keep, names = list(passthrough), [*passthrough, probs_col]

    def fn(batches):
        import pyarrow as pa

        scorer = modelcache.get(("text-scorer", key), lambda: pickle.loads(blob_bc.value))
        for batch in batches:
            p = scorer.probabilities(batch.column(TOKENS))
            k = p.shape[1]
            offsets = pa.array(np.arange(0, k * len(p) + 1, k, dtype=np.int32))
            probs = pa.ListArray.from_arrays(offsets, pa.array(p.ravel(), pa.float64()))
            yield pa.RecordBatch.from_arrays([batch.column(c) for c in keep] + [probs], names=names)

    return fn

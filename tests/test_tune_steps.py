"""The tune job's steps one by one, on small hand-built frames (chispa), and its config merge."""
from __future__ import annotations

import math
from decimal import Decimal
from types import SimpleNamespace

import pytest
import yaml
from chispa import assert_approx_df_equality, assert_df_equality

from mljobs.config import load_config
from mljobs.errors import MljobsError
from mljobs.tune.config import TuneConfig
from mljobs.tune.data import numeric_rows
from mljobs.studies.folds import FOLD_COL, KEY2_COL, KEY_COL, assign_folds, bucket_offsets, with_folds, with_row_keys
from mljobs.tune.space import parse_space
from mljobs.studies.trials import BASE_COLUMNS, write_trials

NAN = float("nan")


# ---------------------------------------------------------------- data: numeric_rows

def test_numeric_rows_encodes_features_drops_null_labels_and_keeps_extra_columns(spark):
    df = spark.createDataFrame(
        [(1, 10, "DL", 2013, "x"), (0, None, "AA", 2013, "y"), (None, 5, "AA", 2014, "z"), (1, 7, "UA", 2014, "w"),
         (0, 3, None, 2013, "v")],
        "late int, dist int, carrier string, Year int, note string")
    got = numeric_rows(df, "late", ["dist", "carrier"], {"carrier": ["AA", "DL"]}, ["Year"])
    # null label: dropped; null number or string, or a category not in the map: NaN; codes by position
    expected = spark.createDataFrame(
        [(10.0, 1.0, 1, 2013), (NAN, 0.0, 0, 2013), (7.0, NAN, 1, 2014), (3.0, NAN, 0, 2013)],
        "dist double, carrier double, late int, Year int")
    assert_df_equality(got, expected, ignore_nullable=True, allow_nan_equality=True, ignore_row_order=True)


def test_numeric_rows_casts_booleans_and_decimals_to_double(spark):
    df = spark.createDataFrame([(1.0, True, Decimal("2.50")), (0.0, False, None)], "y double, flag boolean, price decimal(5,2)")
    got = numeric_rows(df, "y", ["flag", "price"], {})
    expected = spark.createDataFrame([(1.0, 2.5, 1), (0.0, NAN, 0)], "flag double, price double, y int")
    assert_approx_df_equality(got, expected, 1e-12, ignore_nullable=True, allow_nan_equality=True,
                              ignore_row_order=True)


# ---------------------------------------------------------------- folds

def test_bucket_offsets_number_rows_of_a_class_across_buckets():
    offsets, per_class = bucket_offsets([(1, 7, 2), (0, 3, 4), (0, 1, 5), (1, 2, 1)])
    assert offsets == [(0, 1, 0), (0, 3, 5), (1, 2, 0), (1, 7, 1)]
    assert per_class == {0: 9, 1: 3}


def test_with_folds_numbers_rows_by_key_within_bucket_from_the_bucket_offset(spark):
    keyed = spark.createDataFrame(
        [("a", 0, 0, 9, 1), ("b", 0, 0, 5, 1), ("c", 0, 1, 2, 1), ("d", 1, 0, 3, 1), ("e", 1, 0, 3, 0),
         ("f", 1, 4, 8, 1)],
        f"id string, y int, _bucket bigint, {KEY_COL} bigint, {KEY2_COL} int")
    offsets = spark.createDataFrame([(0, 0, 0), (0, 1, 2), (1, 0, 0), (1, 4, 2)], "_cls int, _obucket bigint, _offset bigint")
    got = with_folds(keyed, offsets, "y", 3)
    # class 0 bucket 0: b (key 5) #1 -> 0, a (key 9) #2 -> 1; bucket 1 starts at 2: c -> 2.
    # class 1 bucket 0: key tie broken by the second key: e #1 -> 0, d #2 -> 1; bucket 4 at 2: f -> 2.
    expected = spark.createDataFrame(
        [("a", 0, 9, 1, 1), ("b", 0, 5, 1, 0), ("c", 0, 2, 1, 2), ("d", 1, 3, 1, 1), ("e", 1, 3, 0, 0),
         ("f", 1, 8, 1, 2)],
        f"id string, y int, {KEY_COL} bigint, {KEY2_COL} int, {FOLD_COL} int")
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_with_row_keys_depend_on_content_and_seed_only(spark):
    df = spark.createDataFrame([("r1", 1.0, 0), ("r2", 1.0, 0), ("r3", 2.0, 0)], "id string, x double, y int")
    rows = {r["id"]: r for r in with_row_keys(df, 7, ["x", "y"]).collect()}
    assert (rows["r1"][KEY_COL], rows["r1"][KEY2_COL]) == (rows["r2"][KEY_COL], rows["r2"][KEY2_COL])
    assert rows["r1"][KEY_COL] != rows["r3"][KEY_COL]
    assert all(r["_bucket"] == r[KEY_COL] % 1024 for r in rows.values())  # Python's % is pmod
    other = with_row_keys(df, 8, ["x", "y"]).where("id = 'r1'").first()
    assert other[KEY_COL] != rows["r1"][KEY_COL]


def test_assign_folds_is_stratified(spark):
    df = spark.createDataFrame([(float(i), 0) for i in range(7)] + [(float(i), 1) for i in range(100, 104)],
                               "x double, y int")
    folded, counts = assign_folds(df, "y", 3, 42, ["x", "y"])
    assert counts == {0: 7, 1: 4}
    per_fold = folded.groupBy("y", FOLD_COL).count()
    # 7 rows of class 0 -> 3, 2, 2 over folds 0, 1, 2; 4 of class 1 -> 2, 1, 1 (running number mod 3)
    expected = spark.createDataFrame([(0, 0, 3), (0, 1, 2), (0, 2, 2), (1, 0, 2), (1, 1, 1), (1, 2, 1)],
                                     f"y int, {FOLD_COL} int, count bigint")
    assert_df_equality(per_fold, expected, ignore_nullable=True, ignore_row_order=True)


# ---------------------------------------------------------------- trials table

def _trial(n: int, **params) -> dict:
    row = {name: None for name, _ in BASE_COLUMNS}
    row.update({"trial_number": n, "state": "COMPLETE", "value": 0.5 + n / 10, "fold_values": [0.5, 0.5 + n / 5],
                "params_json": "{}", **{f"p_{k}": v for k, v in params.items()}})
    return row


def test_write_trials_replaces_only_the_studys_partition_and_adds_new_parameter_columns(spark):
    space = parse_space("xgboost", {"max_depth": {"type": "int", "low": 2, "high": 4}, "tree_method": "hist"})
    a = SimpleNamespace(db="tune_steps", study="a", space=space)
    assert write_trials(spark, a, [_trial(0, max_depth=2), _trial(1, max_depth=3)]) == "tune_steps.tuning_trials"
    write_trials(spark, SimpleNamespace(db="tune_steps", study="b", space=space), [_trial(0, max_depth=4)])
    wider = parse_space("xgboost", {"max_depth": {"type": "int", "low": 2, "high": 4},
                                    "learning_rate": {"type": "float", "low": 0.1, "high": 0.3}})
    write_trials(spark, SimpleNamespace(db="tune_steps", study="a", space=wider), [_trial(0, max_depth=2, learning_rate=0.2)])
    got = spark.sql("SELECT study, trial_number, value, fold_values, p_max_depth, p_learning_rate "
                    "FROM tune_steps.tuning_trials")
    expected = spark.createDataFrame(
        [("a", 0, 0.5, [0.5, 0.5], 2, 0.2), ("b", 0, 0.5, [0.5, 0.5], 4, None)],
        "study string, trial_number bigint, value double, fold_values array<double>, p_max_depth bigint, "
        "p_learning_rate double")
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)
    write_trials(spark, SimpleNamespace(db="tune_steps", study="a", space=wider), [])  # an empty study: no rows
    assert [r["study"] for r in spark.sql("SELECT DISTINCT study FROM tune_steps.tuning_trials").collect()] == ["b"]


# ---------------------------------------------------------------- config: the one merge

def _config_file(tmp_path, values: dict):
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_load_config_rejects_an_unknown_yaml_key(tmp_path):
    with pytest.raises(MljobsError, match=r"unknown keys \['max_trail'\]"):
        load_config(TuneConfig, {"table": "a.b", "study": "x"}, "tune", _config_file(tmp_path, {"max_trail": 3}))


def test_a_flag_overrides_the_yaml_value_and_yaml_overrides_the_default(tmp_path):
    path = _config_file(tmp_path, {"max_trials": 3, "cv_folds": 5, "threads_per_trial": "auto"})
    cfg = load_config(TuneConfig, {"table": "a.b", "study": "x", "max_trials": 8, "cv_folds": None}, "tune", path)
    assert (cfg.max_trials, cfg.cv_folds, cfg.threads_per_trial, cfg.max_parallel) == (8, 5, None, 2)
    assert math.isclose(cfg.max_runtime_per_trial, 3600.0)

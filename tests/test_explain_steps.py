"""The explain job's DataFrame -> DataFrame steps, one by one, on small hand-built frames
with hand-computed results; and its config merge (conf/explain.yaml < --config < flags)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from mljobs.config import load_config
from mljobs.errors import MljobsError
from mljobs.explain import aggregate
from mljobs.explain.config import ExplainConfig
from mljobs.explain.job import interaction_strength, local_totals, model_inputs, rows_with_ids
from mljobs.models.artifact import ModelArtifact

GLOBAL_SCHEMA = StructType([
    StructField("group_by", StringType()), StructField("group_value", StringType()),
    StructField("feature", StringType()), StructField("rows", LongType(), False),
    StructField("mean_abs", DoubleType()), StructField("median", DoubleType()),
    StructField("mean_sq", DoubleType()), StructField("mean", DoubleType()),
    StructField("rank", IntegerType()),
])


@pytest.fixture(scope="module")
def local(spark):
    """shap_local of four rows and two features a, b; g1/g2 are grouping columns."""
    rows = [(1, "x", "p", 1.0, -4.0), (2, "x", "q", -3.0, 0.0), (3, "y", "p", 2.0, 1.0), (4, "y", None, 4.0, 1.0)]
    return spark.createDataFrame(rows, "id long, g1 string, g2 string, shap_a double, shap_b double")


def _sorted(df):
    return df.orderBy("group_by", "group_value", "feature")


def test_global_shap_over_all_rows(spark, local):
    # a: 1, -3, 2, 4 -> mean|.| 10/4, median (1+2)/2, mean sq 30/4, mean 4/4
    # b: -4, 0, 1, 1 -> mean|.| 6/4, median (0+1)/2, mean sq 18/4, mean -2/4; a ranks first by mean_abs
    out = aggregate.global_shap(local, ["a", "b"])
    expected = spark.createDataFrame([
        ("(all)", None, "a", 4, 2.5, 1.5, 7.5, 1.0, 1),
        ("(all)", None, "b", 4, 1.5, 0.5, 4.5, -0.5, 2),
    ], GLOBAL_SCHEMA)
    assert_approx_df_equality(_sorted(out), _sorted(expected), 1e-12, ignore_nullable=True)


def test_global_shap_ranks_by_the_agg_method(spark, local):
    # by the signed median's absolute value: a 1.5 > b 0.5; by mean: |a| 1.0 > |b| 0.5; by mean_sq
    # on rows with b's big value only (id 1): b 16 > a 1
    one = local.where("id = 1")
    out = aggregate.global_shap(one, ["a", "b"], agg_method="mean_sq")
    expected = spark.createDataFrame([
        ("(all)", None, "a", 1, 1.0, 1.0, 1.0, 1.0, 2),
        ("(all)", None, "b", 1, 4.0, -4.0, 16.0, -4.0, 1),
    ], GLOBAL_SCHEMA)
    assert_approx_df_equality(_sorted(out), _sorted(expected), 1e-12, ignore_nullable=True)


def test_global_shap_per_group_and_combined_grouping(spark, local):
    out = aggregate.global_shap(local, ["a", "b"], ["g1", "g1,g2"]).where("group_by != '(all)'")
    expected = spark.createDataFrame([
        # g1 = x: ids 1, 2; g1 = y: ids 3, 4
        ("g1", "x", "a", 2, 2.0, -1.0, 5.0, -1.0, 1), ("g1", "x", "b", 2, 2.0, -2.0, 8.0, -2.0, 2),
        ("g1", "y", "a", 2, 3.0, 3.0, 10.0, 3.0, 1), ("g1", "y", "b", 2, 1.0, 1.0, 1.0, 1.0, 2),
        # combined: one row each; a NULL value is spelled NULL in group_value
        ("g1,g2", "x,p", "a", 1, 1.0, 1.0, 1.0, 1.0, 2), ("g1,g2", "x,p", "b", 1, 4.0, -4.0, 16.0, -4.0, 1),
        ("g1,g2", "x,q", "a", 1, 3.0, -3.0, 9.0, -3.0, 1), ("g1,g2", "x,q", "b", 1, 0.0, 0.0, 0.0, 0.0, 2),
        ("g1,g2", "y,p", "a", 1, 2.0, 2.0, 4.0, 2.0, 1), ("g1,g2", "y,p", "b", 1, 1.0, 1.0, 1.0, 1.0, 2),
        ("g1,g2", "y,NULL", "a", 1, 4.0, 4.0, 16.0, 4.0, 1), ("g1,g2", "y,NULL", "b", 1, 1.0, 1.0, 1.0, 1.0, 2),
    ], GLOBAL_SCHEMA)
    assert_approx_df_equality(_sorted(out), _sorted(expected), 1e-12, ignore_nullable=True)


def test_long_format_has_one_row_per_row_and_feature(spark, local):
    out = aggregate._long(local.where("id <= 2"), ["a", "b"], ["g1"])
    expected = spark.createDataFrame([("x", "a", 1.0), ("x", "b", -4.0), ("x", "a", -3.0), ("x", "b", 0.0)],
                                     "g1 string, feature string, value double")
    assert_df_equality(out, expected, ignore_nullable=True, ignore_row_order=True)


def test_model_inputs_take_the_id_groups_and_features_as_doubles(spark):
    df = spark.createDataFrame([(7, "AA", 3, "red", 1.5, "unused"), (8, "BB", None, "blue", 2.0, "unused")],
                               "FlightId long, Carrier string, Month int, Color string, Dist double, other string")
    art = ModelArtifact(study="s", family="xgboost", label="y", features=["Month", "Color", "Dist"], params={},
                        categorical_maps={"Color": ["blue", "red"]})
    # column names matched case-insensitively, the table's spelling kept; categories as their positions
    sel, id_col, passthrough = model_inputs(df, art, "flightid", ["carrier"])
    expected = spark.createDataFrame([(7, "AA", 3.0, 1.0, 1.5), (8, "BB", None, 0.0, 2.0)],
                                     "FlightId long, Carrier string, value_Month double, value_Color double, "
                                     "value_Dist double")
    assert (id_col, passthrough) == ("FlightId", ["FlightId", "Carrier"])
    assert_df_equality(sel, expected, ignore_nullable=True, ignore_row_order=True)


def test_model_inputs_generate_a_row_id_without_an_id_column(spark):
    df = spark.createDataFrame([(1.0,), (2.0,), (3.0,)], "Dist double").coalesce(1)
    art = ModelArtifact(study="s", family="xgboost", label="y", features=["Dist"], params={})
    sel, id_col, passthrough = model_inputs(df, art, None, [])
    expected = spark.createDataFrame([(0, 1.0), (1, 2.0), (2, 3.0)], "row_id long, value_Dist double")
    assert (id_col, passthrough) == ("row_id", ["row_id"])
    assert_df_equality(sel, expected, ignore_nullable=True)


def test_local_totals_and_rows_with_ids(spark):
    local = spark.createDataFrame([(10, 1e-6, 0.5, 0.2), (11, 3e-6, 0.5, 0.6), (12, 2e-6, 0.5, 0.7)],
                                  "id long, additivity_error double, base_value double, prediction double")
    expected = spark.createDataFrame([(3, 3e-6, 0.5, 0.5)], "n long, err double, base double, pred double")
    assert_approx_df_equality(local_totals(local), expected, 1e-15, ignore_nullable=True)
    # ids compared as strings, so "11" finds the long 11
    picked = rows_with_ids(local, "id", ["11", "12", "99"]).select("id")
    assert_df_equality(picked, spark.createDataFrame([(11,), (12,)], "id long"), ignore_row_order=True)


def test_interaction_strength_is_the_mean_absolute_value_per_pair(spark):
    inter = spark.createDataFrame([(1, "a", "a", 2.0), (2, "a", "a", -4.0), (1, "a", "b", -1.0), (2, "a", "b", 0.0),
                                   (1, "b", "a", -1.0), (2, "b", "a", 0.0)],
                                  "id long, feature_a string, feature_b string, value double")
    expected = spark.createDataFrame([("a", "a", 3.0), ("a", "b", 0.5), ("b", "a", 0.5)],
                                     "feature_a string, feature_b string, mean_abs double")
    assert_approx_df_equality(interaction_strength(inter).orderBy("feature_a", "feature_b"), expected, 1e-12,
                              ignore_nullable=True)


def _flags(argv):
    """The flags jobs/explain.py parses from argv (those given only), and its --config FILE."""
    spec = importlib.util.spec_from_file_location("_explain_entry", Path(__file__).parents[1] / "jobs" / "explain.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    args = vars(entry.parse_args(argv))
    return {k: v for k, v in args.items() if k not in ("config", "data_dir", "summary")}, args.get("config")


def test_config_rejects_an_unknown_yaml_key(tmp_path):
    cfg_file = tmp_path / "explain.yaml"
    cfg_file.write_text("top_k: 3\nnum_sample: 10\n")  # num_samples misspelt
    flags, path = _flags(["--model", str(tmp_path), "--table", "a.b", "--config", str(cfg_file)])
    with pytest.raises(MljobsError, match=r"unknown keys \['num_sample'\]"):
        load_config(ExplainConfig, flags, "explain", path)


def test_flags_override_the_yaml_and_yaml_the_defaults(tmp_path):
    cfg_file = tmp_path / "explain.yaml"
    cfg_file.write_text("top_k: 3\nagg_method: median\nplots: true\ngroup_by: Month\n")
    flags, path = _flags(["--model", str(tmp_path), "--table", "a.b", "--config", str(cfg_file),
                          "--top-k", "7", "--no-plots"])
    cfg = load_config(ExplainConfig, flags, "explain", path)
    assert (cfg.top_k, cfg.agg_method, cfg.plots, cfg.group_by) == (7, "median", False, ["Month"])
    assert (cfg.method, cfg.num_samples, cfg.use_logit) == ("tree", 1000, True)  # the fields' defaults

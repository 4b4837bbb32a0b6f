"""Spark's Python workers keep the directories of Spark's own archives across tasks (PySpark
re-reads every zip on the path before each task otherwise); other archives are re-read."""
from __future__ import annotations

import importlib
import zipfile
import zipimport

import pytest

from mljobs import pyworker


def archive(path, names):
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, "x = 1\n")
    return str(path)


@pytest.fixture
def kept(monkeypatch):
    monkeypatch.setattr(zipimport.zipimporter, "invalidate_caches", zipimport.zipimporter.invalidate_caches)
    pyworker.keep_spark_archives()
    pyworker.keep_spark_archives()  # idempotent: one wrapper, not two


def test_spark_archives_are_kept_and_others_re_read(tmp_path, kept):
    jar = zipimport.zipimporter(archive(tmp_path / "spark-core_2.12-3.5.5.jar", ["a.py"]))
    own = zipimport.zipimporter(archive(tmp_path / "deps.zip", ["a.py"]))
    for imp, name in ((jar, "spark-core_2.12-3.5.5.jar"), (own, "deps.zip")):
        archive(tmp_path / name, ["a.py", "b.py"])  # the archive changes on disk
    importlib.invalidate_caches()
    jar.invalidate_caches()
    own.invalidate_caches()
    assert jar.find_spec("b") is None  # Spark's jar: its directory as first read
    assert own.find_spec("b") is not None  # any other archive: re-read
    assert getattr(zipimport.zipimporter.invalidate_caches, pyworker.MARK)


def test_which_archives_are_sparks():
    assert all(map(pyworker.spark_archive, ["/usr/lib/spark/jars/spark-core_2.12-3.5.5.jar",
                                             "/x/pyspark/python/lib/pyspark.zip", "/x/lib/py4j-0.10.9.7-src.zip"]))
    assert not any(map(pyworker.spark_archive, ["/tmp/deps.zip", "/tmp/pyspark.zip.bak", "/tmp/mljobs.egg"]))


def test_a_worker_that_imports_mljobs_keeps_sparks_archives(spark):
    """In a real Python worker: the first import of mljobs installs it; the driver is untouched."""
    def probe(_):
        import mljobs  # noqa: F401 (its first import in the worker is what is tested)
        import zipimport as z

        yield bool(getattr(z.zipimporter.invalidate_caches, pyworker.MARK, False)), pyworker.in_worker()

    assert set(spark.sparkContext.parallelize(range(4), 4).mapPartitions(probe).collect()) == {(True, True)}
    assert not pyworker.in_worker()


def test_local_workers_run_the_jobs_interpreter(tmp_path):
    """A session built without PYSPARK_PYTHON (a notebook kernel, a script run as .venv/bin/python):
    its Python workers are this interpreter, with its packages, not the first python3 on PATH."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "PYSPARK_PYTHON"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != Path(sys.executable).parent.resolve())
    code = ("from mljobs.session import build_session\n"
            f"s = build_session('t', data_dir={str(tmp_path)!r}, conf={{'spark.master': 'local[1]', "
            "'spark.ui.enabled': 'false'})\n"
            "print(s.sparkContext.parallelize([0], 1).map(lambda _: __import__('sys').executable).collect()[0])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == sys.executable

"""mljobs: Spark-native data and ML jobs for spark-submit, EMR and SparkMagic."""

from mljobs import pyworker as _pyworker

__version__ = "0.1.0"

if _pyworker.in_worker():
    _pyworker.keep_spark_archives()

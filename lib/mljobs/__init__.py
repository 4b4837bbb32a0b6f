"""mljobs: Spark-native data and ML jobs for spark-submit, EMR and SparkMagic."""

__version__ = "0.1.0"

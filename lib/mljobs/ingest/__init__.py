"""Ingest: CSV/Parquet files into partitioned Hive tables, malformed rows quarantined."""

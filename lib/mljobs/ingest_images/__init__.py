"""ingest-images: image files (folders named after labels, or a manifest) -> a Hive table with a train/test split."""

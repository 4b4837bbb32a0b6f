"""classify: a train-classifier model labels images (a table's content column, or image files) into a Hive table."""

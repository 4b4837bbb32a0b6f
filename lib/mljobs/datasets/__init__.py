"""Datasets the project ships or generates (no downloads at run time)."""

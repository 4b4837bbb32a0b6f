"""train-classifier: an image classifier trained on an ingest-images table (docs/images.md)."""

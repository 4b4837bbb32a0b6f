"""frames: video files -> a Hive table of their frames (encoded images), decoded by OpenCV in Spark tasks."""

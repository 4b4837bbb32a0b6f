"""Batch scoring of Hive tables with a tune model (the ``predict`` job).

``job.run_predict`` (the job's ``run``) is the job body, a sequence of named steps; the
scoring itself is the shared plumbing ``mljobs.models.scoring`` (Spark side) and
``mljobs.models.inference`` (inside the Python workers), which the HTTP server and the
bias job use too.
"""

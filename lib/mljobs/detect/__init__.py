"""Object detection over a frames table (the ``detect`` job).

``job.run_detect`` (the job's ``run``) is the job body, a short sequence of named steps; the
detectors themselves (model resolution, building them once per Python worker, decoding and
detecting in Spark tasks) are the plumbing module ``mljobs.models.detectors``.
"""

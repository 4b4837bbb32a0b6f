"""``python -m mljobs.serve``: an HTTP server for a tune model that keeps SageMaker's inference
container contract (``GET /ping``, ``POST /invocations`` on port 8080, the model under
``/opt/ml/model``), run by gunicorn. Not a Spark job: it is not in ``mljobs.registry.JOBS``.

Rows are scored through ``mljobs.models.inference`` (the core the batch predict job uses), so a
row gets the same probability from the server and from the job. See docs/serve.md.
"""

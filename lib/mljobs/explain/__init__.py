"""SHAP explanations of model artifacts over Hive tables (the ``explain`` job).

``job.run_explain`` (the job's ``run``) is the job body, a sequence of named steps; ``tree_shap``/``kernel`` compute per-row
values inside ``mapInPandas``; ``aggregate`` builds the global/per-group table in SQL;
``clarify`` writes ``analysis.json``; ``plots`` draws the PNGs.
"""

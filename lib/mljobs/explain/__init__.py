"""SHAP explanations of model artifacts over Hive tables (the ``explain`` job).

``pipeline.run_explain`` is the job body; ``tree_shap``/``kernel`` compute per-row
values inside ``mapInPandas``; ``aggregate`` builds the global/per-group table in SQL;
``clarify`` writes ``analysis.json``; ``plots`` draws the PNGs.
"""

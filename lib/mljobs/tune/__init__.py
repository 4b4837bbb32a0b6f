"""Hyperparameter tuning of XGBoost and Random Forest with cross-validation on Spark (Optuna)."""

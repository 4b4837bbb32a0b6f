"""Optuna studies shared by the jobs that search hyper-parameters (tune, train-text): the study
(storage, sampler, pruner, resume), the `<db>.tuning_trials` table, the trial loop (parallel
trials, time limits, interruption) and stratified folds by content hash."""

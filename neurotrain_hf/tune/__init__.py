"""``neurotrain tune``: hyperparameter search through ``Trainer.hyperparameter_search`` (optuna backend),
with the study in the runs database so workers share it and a killed search resumes."""

"""The evaluator runner: drives lmms-eval inside the evaluator pod and reports results."""

"""Evaluation of SAEs: every number people use to choose and trust one, each next to its baselines.

One module per family of metrics, each a function ``evaluate(ctx) -> dict`` over an ``EvalContext``
(``visae.evals.context``): the saved SAE, held-out tokens, and the baselines behind the same contract
(``visae.evals.encoders``). ``visae eval`` runs the suites and writes RUN/eval/*.json; definitions are in
docs/metrics.md.
"""

"""Validation of every conversion stage against the PyTorch reference.

Runners (``validation.runners``) execute one artifact each behind one interface; comparators
(``validation.comparators``) measure raw-output and detection agreement; ``validation.report`` writes
``validation.json`` / ``report.md`` / pictures; ``validation.api.validate_artifacts`` is what the convert
command runs after the stages; ``commands.validate`` is the command line (validate, accept, check, foreign).
"""

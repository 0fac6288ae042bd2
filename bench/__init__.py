"""Baton's benchmark: ``make bench`` / ``python -m bench [--quick] [--profile]``. See ``bench/run.py``."""

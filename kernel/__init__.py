"""Baton's kernel: what every room uses and nothing of Baton's own.

config (settings), clock (injected time), db (engine, sessions, types), errors (the RFC 9457
hierarchy), logs, metrics, validation, durations, calendars, pagination, locales (the locale
registry; its Babel catalogs in ``translations/``). The import contract in
``pyproject.toml`` (``[tool.importlinter]``, run by ``make test``) keeps it at the bottom:
tracker → notifications → partners → kernel, and nothing below ``tracker`` imports it.
"""

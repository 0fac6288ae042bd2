"""Baton's kernel (config, db, errors, clock, ids) and the case domain."""

"""The HTTP layer: the app factory, request dependencies and routes. Nothing below imports it."""

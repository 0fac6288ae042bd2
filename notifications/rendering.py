"""Jinja2 environments for messages: built once per process, templates compiled once."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_partner_email(kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, plain text and HTML of an email to a partner's ops contact or the supervisors."""
    env = environment()
    subject = env.get_template(f"partner/{kind}.subject.txt").render(context).strip()
    text = env.get_template(f"partner/{kind}.txt").render(context)
    html = env.get_template(f"partner/{kind}.html").render(context)
    return subject, text, html

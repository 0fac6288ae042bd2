"""The staff web console (``/console``): the complaint department's screens, server-rendered.

Every page and action calls the same service functions as the JSON API (``tracker.cases``,
``tracker.complaints``, ``partners.service``, ``notifications.dispatcher``); this package only
reads forms, checks the console's rules, and renders:

    _session     the session cookie, sign-in form and CSRF tokens
    _pages       templates, the page frame, error pages (``ConsoleRoute``), redirects, URLs
    _ctx         ``StaffCtx``: the signed-in request, and ``write``, the one way an action writes
    auth         signing in and out
    sso          single sign-on through the organization's OpenID Connect provider
    queue        the overdue queue (the home page)
    cases        search, the case page and the actions on a case
    partners     scorecards, the league, and (admins) partners and keys
    deliveries   webhook deliveries and re-sending them
    exports      the export form and its download (``tracker.web.exports``)

Rules on top of the services':
- every POST carries the session's CSRF token (403 otherwise, and nothing changes);
- supervisors close cases, release parties and re-send dead-lettered webhooks; admins manage
  partners and keys. Agents get 403 pages for those, and do not see the buttons;
- actions answer with a redirect back (POST-redirect-GET) and a fixed confirmation message,
  except creating a key or partner, whose page shows a secret once and is never redirected to.

Errors from the services become HTML pages with the same status codes as the API's problems.
The charts' geometry is in ``tracker.web.charts``.
"""

from __future__ import annotations

from fastapi import APIRouter

from tracker.web.console import auth, cases, deliveries, exports, partners, queue, sso
from tracker.web.console._ctx import StaffCtx
from tracker.web.console._pages import DONE

__all__ = ["DONE", "StaffCtx", "router"]

router = APIRouter(include_in_schema=False)  # each part carries the /console prefix (see _pages.console_router)
for _part in (auth, sso, queue, cases, partners, deliveries, exports):
    router.include_router(_part.router)

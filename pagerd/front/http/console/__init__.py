"""The web console: services, open incidents and their timelines as pages on the server, with
Acknowledge and Resolve buttons, for people signed in (a password, or a trusted proxy's
header).

In: requests under `/console/` from a browser (a session cookie, a CSRF token on every form).
Out: pages rendered from the same `status` and `history` reads REST serves, and a person's
`Ack(by=user)` or `Healthy()` routed to the service's actor with `via = "console"`, shown
once committed. It never shows a client's text unescaped, never accepts a form without its
token, never lets a read-only user answer, and never logs a password, cookie or token.

- `app.py`: the routes and who is asking; `pages.py`: templates, style sheet and script
- `views.py`: what a page shows, from the replies; `forms.py`: forms read strictly
- `lockout.py`: failed sign-ins per user and address, bounded
"""

from pagerd.front.http.console.app import Console

__all__ = ["Console"]

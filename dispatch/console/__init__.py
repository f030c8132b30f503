"""The operator console: server-rendered pages, a live floor, and what every page shares.

Modules:

- `app.py`: what the web application mounts (routes of `PAGE_MODULES`, the
  static files, `MIDDLEWARES`, `setup_app`); `dispatch.service.api_modules()`
  lists it.
- `pages.py`: the session middleware, `page(role)` and `render(...)`.
- `sessions.py`: sessions in PostgreSQL, log-in with its rate limit.
- `csrf.py`: the CSRF middleware and the token of a request.
- `login.py`: log-in, log-out, the language switch.
- `i18n.py`: catalogues (`locale/*/LC_MESSAGES/console.po`, read with Babel),
  the Jinja2 environments, the texts the scripts get.
- `floor.py`: the floor page, its snapshot and the resident card.
- `live.py`: the WebSocket that carries bus events to the browser.
- `access_log.py`: the admin page of who opened which resident's record
  (written by `dispatch/resident_access.py`).

Adding a page:

1. A module with `routes = web.RouteTableDef()`; add it to `PAGE_MODULES` in
   `app.py`. Paths start with `/console/`.
2. Guard each page handler with `@page(Role.X)` (under the route decorator):
   signed out → the log-in page (then back), below the role → the 403 page.
   JSON handlers for the page's scripts call `current_user(request, Role.X)`
   from `dispatch.api.auth` (401/403 as JSON); better still, the script calls
   the `/api/v1/…` endpoint that already exists: the session signs it in.
3. `return render(request, "thing.html", {...})`; the template
   `{% extends "base.html" %}` and fills `{% block main %}` (also `title`,
   `nav_extra` for a header link, `scripts`, `head`, `body_class`). The base
   gives `user`, `lang`, `csrf_token`, `tz`, `path`, `Role`.
4. Texts: `{{ _("English text") }}` in templates, `gettext_for(request)` in
   Python, `CARELINE.t("English text")` in scripts (add the id to
   `SCRIPT_TEXTS` in `i18n.py`); then `make messages` and fill in the
   Chinese in `locale/zh_CN/LC_MESSAGES/console.po`. Times:
   `{{ value | local_time(tz) }}`, `CARELINE.time(iso)` / `CARELINE.dateTime(iso)`.
   Templates use Jinja's new-style gettext, which always applies `%` formatting:
   a literal percent is written `%%` (a test refuses a bare one).
5. Forms that change anything are POST and carry
   `<input type="hidden" name="csrf_token" value="{{ csrf_token }}">`;
   scripts use `CARELINE.api(method, url, body)`, which sends `X-CSRF-Token`.
   The middleware refuses anything else with 403.
6. Showing one resident's record: call
   `dispatch.resident_access.log_resident_access(conn, request, user, resident_id, via="page")`.
7. Build page content in scripts with `CARELINE.el(tag, attrs, ...children)`
   (text nodes only), never `innerHTML`: names and notes come from people.
"""

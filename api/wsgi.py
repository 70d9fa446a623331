"""The WSGI entry point for any WSGI server: ``gunicorn -k gthread --threads 8 shopsearch.api.wsgi:app``.

Settings come from $SHOPSEARCH_CONFIG and the environment (see shopsearch.settings); ``shopsearch serve``
wraps the same app with sensible gunicorn options.
"""

from __future__ import annotations

from .app import create_app

app = create_app()

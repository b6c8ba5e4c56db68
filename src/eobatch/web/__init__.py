"""The web console: what it shows of tasks (`results`), quicklooks of outputs (`quicklook`), and
its pages with their packaged assets (`pages`, `static/`). Its API routes are `api/console.py`."""

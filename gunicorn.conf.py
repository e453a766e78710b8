"""Production settings for `gunicorn -c gunicorn.conf.py 'app:create_app()'` (make run uses it)."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
# Sync workers: requests are short and bcrypt is CPU-bound, so one per core plus one.
workers = int(os.environ.get("WORKERS") or multiprocessing.cpu_count() + 1)
timeout = 30  # a worker stuck this long is restarted
graceful_timeout = 20
keepalive = 5
# Bodies over 1 MiB are refused by the app; headers and request lines stay small.
limit_request_line = 8190
limit_request_fields = 50

accesslog = "-"
errorlog = "-"
# %(U)s is the path without the query string, and no header is logged: neither an
# Authorization header nor a token pasted into a URL can end up in the logs.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

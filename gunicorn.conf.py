"""Production settings for `gunicorn -c gunicorn.conf.py 'app:create_app()'` (make run uses it)."""

import glob
import multiprocessing
import os
import re
import shutil
import tempfile

from gunicorn.glogging import Logger

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
# Sync workers: requests are short and bcrypt is CPU-bound, so one per core plus one.
workers = int(os.environ.get("WORKERS") or multiprocessing.cpu_count() + 1)
timeout = 30  # a worker stuck this long is restarted
# On SIGTERM the workers stop accepting connections and finish the requests they have:
# the longest a request can take is about 3 x MYSQL_READ_TIMEOUT (15 s by default, the
# client library tries a read three times), so 20 s lets every one finish. Past it,
# workers are killed.
graceful_timeout = 20
keepalive = 5
# Bodies over 1 MiB are refused by the app; headers and request lines stay small.
limit_request_line = 8190
limit_request_fields = 50

# No control socket: its default path ($HOME/.gunicorn/gunicorn.ctl) is shared by every
# master of one user, so each start or stop would unlink another instance's; nothing here
# uses gunicornc.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
# %(U)s is the path without the query string, and no header is logged: neither an
# Authorization header nor a token pasted into a URL can end up in the logs.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'


class EscapingLogger(Logger):
    """The access log escapes control characters, quotes and backslashes in every field:
    a path with %0a cannot forge a line, and %1b cannot send escapes to a terminal."""

    UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            key: self.UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
            if isinstance(value, str)
            else value
            for key, value in atoms.items()
        }


logger_class = EscapingLogger


# Metrics: prometheus_client's multiprocess mode. Every worker writes its numbers to files
# in PROMETHEUS_MULTIPROC_DIR, and GET /metrics adds them up. The master sets the variable
# before it forks any worker (the mode is chosen when a worker first imports the client, so
# leave preload_app off); files left by an earlier run would count twice, so the directory
# starts empty.
created_metrics_directory = []


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)
    else:
        directory = tempfile.mkdtemp(prefix="secureapi-metrics-")  # mode 0700
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        created_metrics_directory.append(directory)


def child_exit(server, worker):
    # Imported here, not above: the master must not pick the mode before the variable is set.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for directory in created_metrics_directory:
        shutil.rmtree(directory, ignore_errors=True)

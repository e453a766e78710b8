"""The app as `make run` serves it, plus one trivial JSON route: the framework ceiling."""

from app import create_app

app = create_app()
app.add_url_rule("/bench/ceiling", "ceiling", lambda: {"status": "ok"})

"""The app as `make run` serves it, plus one trivial JSON route: the framework ceiling.

`bare` is Flask alone with that route (no hooks, no extensions): the bare-Flask ceiling
that the production rows are measured against."""

from flask import Flask

from app import create_app

app = create_app()
app.add_url_rule("/bench/ceiling", "ceiling", lambda: {"status": "ok"})

bare = Flask(__name__)
bare.add_url_rule("/bench/ceiling", "ceiling", lambda: {"status": "ok"})

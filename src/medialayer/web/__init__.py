"""The review UI: server-rendered pages (Jinja2), htmx and a few lines of JavaScript shipped in
the package (static/), sessions signed in with an API key that has the `review` scope."""

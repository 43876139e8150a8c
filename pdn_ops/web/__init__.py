"""The web layer: create_app(), thin routes, templates and the JSON API."""

"""The composition root: the runtime built once, create_app, the start hooks, the CLI.

Nothing imports it."""

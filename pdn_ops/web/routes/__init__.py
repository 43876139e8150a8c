"""Route modules; each exposes ``router``. Registered explicitly in ``pdn_ops.web.app``."""

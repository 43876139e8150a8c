"""pdn-ops: keeps a regency data centre's hosted VMs and websites running."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up lazily: importlib.metadata costs ~0.1 s, and the lab's guest shell imports this package on
    # every SSH command it answers.
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("pdn-ops")
        except metadata.PackageNotFoundError:  # running from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'pdn_ops' has no attribute {name!r}")

"""pdn-ops: keeps a regency data centre's hosted VMs and websites running."""

from importlib import metadata

try:
    __version__ = metadata.version("pdn-ops")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

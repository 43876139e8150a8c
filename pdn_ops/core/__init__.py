"""The core every feature builds on: settings, errors, inventory, the database, locks, the scheduler, i18n.

It imports no feature."""

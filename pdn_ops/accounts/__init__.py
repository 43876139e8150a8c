"""Accounts: users, roles, sessions, API tokens, the OPD heads' dispositions, the users screen."""

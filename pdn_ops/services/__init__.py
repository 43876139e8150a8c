"""Services: the only layer that combines the database, the domain logic and the plug-ins."""

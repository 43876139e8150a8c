"""Agentless guest checks over SSH with pinned host keys: disks, memory, load, services, failed units."""

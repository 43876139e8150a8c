"""Polls Proxmox VE clusters: two API calls per cluster and cycle, whatever the number of guests."""

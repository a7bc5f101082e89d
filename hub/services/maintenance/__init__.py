"""Maintenance as services: the tasks and their due dates (tasks.py), the lockout check
(lockout.py), sign-offs (signoffs.py), the interlocks' faults (interlocks.py) and the incident
and downtime rows (records.py). The tables are in hub/models/maintenance.py; the watch that runs
the check is hub/maintenance_watch.py."""

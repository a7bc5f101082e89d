"""The `atelier hub ...` commands: thin callers of the services; HubError -> the flag, exit 2.

`main` holds the `hub` command and registers the others; `support` what they share.
"""

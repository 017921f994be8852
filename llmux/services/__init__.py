"""Services: validate before the lease, lease, run, account — one per kind of request."""

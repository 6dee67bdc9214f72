"""The data plane: the ASGI app, the upstream connection pool and the per-request flow."""

"""Kong's acme plugin: certificates from an ACME CA (Let's Encrypt)."""

from __future__ import annotations

"""Kong's stream proxy: ``stream_listen`` and the ``tcp``, ``tls`` and ``tls_passthrough`` routes.

``router``       which stream route a connection takes (Kong's stream priority and matching)
``proxy_protocol`` the PROXY protocol header of a ``proxy_protocol`` listener (v1 and v2)
``clienthello``  the SNI of a ClientHello, peeked at without terminating TLS (ssl_preread)
``certs``        the certificate a terminated connection gets, by SNI (Kong's lookup order)
``snapshot``     one config as the stream proxy uses it (routes, services, ip-restriction)
``access_log``   Kong's ``proxy_stream_access_log`` (``basic`` format, nginx's stream status)
``pipe``         the two sides of a proxied connection, with end-to-end flow control
``server``       the listeners and the per-connection steps (preread, route, connect, pipe)
``main``         the process the supervisor starts when ``stream_listen`` is set
"""

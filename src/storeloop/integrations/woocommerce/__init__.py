"""WooCommerce REST v3 integration: ``client`` (port + httpx adapter), ``models`` (parsed resources),
``errors`` (transient vs terminal), ``signature`` (webhook HMAC) and ``fake`` (a loopback shop).

Nothing here imports Django, so benchmarks and the demo process can use it directly.
"""

"""HubSpot CRM v3 / Associations v4 integration: ``client`` (``HubSpotPort`` + httpx adapter),
``models`` (inputs, property specs, association type ids), ``errors`` (transient vs terminal) and
``fake`` (a loopback HubSpot for tests and benchmarks).

Nothing here imports Django, so benchmarks and the demo process can use it directly.
"""

"""WhatsApp Cloud API (Meta Graph) integration.

- ``client``: ``WhatsAppClient`` — text and approved-template sends, ``test_connection``, the 24-hour
  customer-service window helper.
- ``models``: sent-message results and the webhook parser (status updates, inbound messages,
  STOP/START/HELP keywords).
- ``signature``: ``X-Hub-Signature-256`` and the GET verification handshake.
- ``errors``: Graph error envelope mapped onto transient vs terminal.
- ``fake``: a loopback WhatsApp Cloud for tests and benchmarks (real HTTP, signed webhooks).

Nothing here imports Django, so benchmarks and the demo process can use it directly.
"""

"""Twilio Programmable Messaging (SMS) integration.

- ``client``: ``TwilioClient`` (send, fetch, look up, test the connection) over the lean keep-alive
  HTTP client (``integrations.keepalive``, ADR 8), with the shared rate limiter and retries that
  never resend a message Twilio may already have accepted.
- ``errors``: Twilio failures mapped onto the core retry axis (transient vs terminal).
- ``models``: sent messages, status callbacks, inbound messages and STOP/START/HELP keywords.
- ``segments``: GSM-7 / UCS-2 segment counting and E.164 validation.
- ``signature``: ``X-Twilio-Signature`` computation and validation (form and JSON ``bodySHA256``).
- ``fake``: a loopback Twilio for tests and benchmarks (real HTTP, signed callbacks, faults).

Nothing here imports Django, so benchmarks and the demo process can use it directly.
"""

"""Provider webhooks for messaging: Twilio status callbacks and inbound SMS, WhatsApp Cloud webhooks
and e-mail bounce/complaint events.

The path of each (see docs/messaging-webhooks.md): ``views`` reads the raw request, ``services``
finds the store's connection, checks the signature in constant time and stores the delivery in the
inbox (``inbox.services.accept_delivery``: durable, deduplicated, replayable); the worker then runs
the matching function of ``handlers`` (named in ``inbox.handlers``), which updates messages
(``statuses``), consent and the WhatsApp customer-service window (``window``).
"""

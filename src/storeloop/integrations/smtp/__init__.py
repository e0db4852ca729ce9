"""E-mail over SMTP: ``message`` (``EmailMessageSpec`` -> MIME with deterministic Message-ID and
RFC 8058 one-click unsubscribe), ``client`` (``SmtpSender``: STARTTLS/TLS, auth, connection reuse,
transient vs terminal errors), ``errors``, ``bounces`` (signed inbound bounce/complaint webhook,
DSN and ARF parsing) and ``fake`` (an aiosmtpd relay on loopback with fault injection).

Nothing here imports Django, so benchmarks and the demo process can use it directly.
"""

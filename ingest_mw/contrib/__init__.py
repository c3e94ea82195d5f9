"""Framework integrations: thin glue that makes the adapters feel native in a host.

``ingest_mw.contrib.django``, ``ingest_mw.contrib.flask`` and
``ingest_mw.contrib.starlette`` import their framework; nothing else in the
package does. :mod:`ingest_mw.contrib.config` is the framework-free part they
share: the option names, their defaults and their validation.
"""

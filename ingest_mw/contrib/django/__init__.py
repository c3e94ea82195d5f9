"""Django integration: ``settings.INGEST_MW``, an ``include()``-able URLconf and a model sink.

* ``path("ingest/", include("ingest_mw.contrib.django.urls"))`` serves Better
  Stack at ``ingest/`` and Baselime at ``ingest/v1/<dataset>``.
* ``"ingest_mw.contrib.django"`` in ``INSTALLED_APPS`` validates
  ``INGEST_MW`` at start-up and stores events in its ``IngestedEvent`` model
  unless ``INGEST_MW["MODEL"]`` or ``INGEST_MW["STORAGE"]`` says otherwise.
* :class:`~ingest_mw.contrib.django.sink.ModelSink` writes batches to any
  model with the fields of
  :class:`~ingest_mw.contrib.django.abstract.AbstractIngestedEvent`.
"""

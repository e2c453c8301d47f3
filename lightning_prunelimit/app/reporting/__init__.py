"""The reports: one job's ``report.json`` / ``report.md``, and a sweep's summary."""

"""Seeing a farm: read-only views of a work directory (status, events, report, plots)."""

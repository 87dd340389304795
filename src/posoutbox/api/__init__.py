"""The M3-compatible REST API: OPS600MI for POS systems, and the master data
transactions of CRS610MI, CRS612MI and OIS002MI for integration tools.

The application factory is ``posoutbox.api.app.create_app``.
"""

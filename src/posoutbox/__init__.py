"""posoutbox: the customer master of an ERP, delivered to the POS systems of many
shops through an M3-compatible outbox."""

__version__ = "0.1.0"

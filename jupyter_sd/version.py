"""The package version: one place, read by the PNG metadata writer and the lab extension check."""

__version__ = "0.1.0"

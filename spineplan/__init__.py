"""spineplan: planning workstation for single-segment minimally invasive spine surgery."""

__version__ = "0.1.0"

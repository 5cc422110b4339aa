"""citydc: operations toolkit for the Siwei (四維) and Fengshan (鳳山) data centre sites."""

__version__ = "0.1.0"

__all__ = ["__version__"]

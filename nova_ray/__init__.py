"""nova-ray: spare-parts demand forecasting and purchasing recommendations on Ray."""

__version__ = "0.1.0"

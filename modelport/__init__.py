"""modelport: a fast, trustworthy model server for MLflow models."""

__version__ = "0.1.0"

"""The code that runs inside the model's environment: stdlib and numpy until mlflow loads.

Kept importable on Python >= 3.9 and free of modelport imports, so any interpreter can run it
from this folder alone (the server puts ``modelport/_runtime`` on ``sys.path``).
"""

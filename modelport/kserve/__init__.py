"""What KServe's controller and webhooks would do with modelport's manifests, computed offline.

Pure functions over the manifests as dicts; ``pyyaml`` is the only dependency (for loading them).
"""

"""The settings the service needs at import, as its unit gives them (an environment, a secret)."""

import os

os.environ.setdefault("DEMO_ENVIRONMENT", "test")
os.environ.setdefault("DEMO_API_TOKEN", "test-token")

"""The service's settings, read once at import, as most FastAPI services read theirs.

From the environment (``DEMO_ENVIRONMENT``, ``DEMO_GREETING``) and, for secrets, from files in
the directory systemd hands the service its credentials in (``$CREDENTIALS_DIRECTORY``), with
pydantic-settings. A missing required setting fails the import: the service never starts half
configured.
"""

from __future__ import annotations

import os

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", secrets_dir=os.environ.get("CREDENTIALS_DIRECTORY"))

    # Where this instance runs: staging, production... (required)
    environment: str
    # The token other services call this one with (required; a secret: a credential file demo_api_token).
    api_token: SecretStr
    greeting: str = "hello"


settings = Settings()

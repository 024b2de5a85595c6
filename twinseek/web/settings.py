"""Settings of the web app (``twinseek serve``) and the bind-address policy."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from twinseek.config import ProfileName
from twinseek.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class WebSettings(BaseModel):
    """What ``twinseek serve`` was asked for. Build directly or through the CLI."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not a silent default

    store: Path = Field(description="The twin store the app searches and ingests into.")
    host: str = Field("127.0.0.1", description="Bind address; anything but loopback needs a token or insecure.")
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = Field(None, description="Bearer token required on every page and API route.")
    insecure: bool = Field(False, description="Allow a non-loopback bind without a token (trusted networks only).")
    profile: ProfileName = "embedded"
    runs: Path = Field(Path("runs"), description="Folder holding the run folders written by `twinseek eval`.")
    max_upload_mb: float = Field(2048.0, gt=0, description="Largest upload request (all its files together).")
    max_upload_files: int = Field(64, ge=1, description="Files per upload request.")
    ingest_roots: list[Path] = Field(
        default_factory=lambda: [Path.cwd()],
        description="Server-side folders (and what is below them) that the ingest page may name.")
    allowed_hosts: list[str] | None = Field(
        None, description="Host headers accepted; None: loopback names for a loopback bind, any otherwise.")
    warm_llm: bool = Field(True, description="Start the LLM (the embedded server) with the app, not on first use.")
    search_threads: int = Field(4, ge=1, description="Searches run at once (each on a worker thread).")
    job_history: int = Field(50, ge=1, description="Finished ingest jobs kept for the ingest page.")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def hosts(self) -> list[str]:
        """Host headers to accept: a loopback bind only answers to loopback names (no DNS rebinding)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if is_loopback(self.host):
            return sorted({"127.0.0.1", "localhost", self.host})
        return ["*"]


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: WebSettings) -> None:
    """Refuse to listen beyond this machine without a token unless ``insecure`` was asked for."""
    if settings.token is not None and not settings.token.strip():
        raise ConfigError("--token is empty")
    if is_loopback(settings.host) or settings.token or settings.insecure:
        return
    raise ConfigError(
        f"refusing to serve on {settings.host} without authentication: anyone who can reach this port could "
        "search, read and add videos. Pass --token TOKEN (or set TWINSEEK_WEB_TOKEN) to require a bearer token, "
        "or --insecure on a network you trust.")

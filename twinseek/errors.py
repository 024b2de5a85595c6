"""Errors raised by twinseek. Every error a user can trigger derives from :class:`TwinseekError`."""

from __future__ import annotations

from pathlib import Path


class TwinseekError(Exception):
    """Base class of every twinseek error."""


class ConfigError(TwinseekError):
    """A setting or profile is invalid, or a configured model cannot be loaded."""


class ModelUnavailableError(ConfigError):
    """A configured model's weights are not on this machine (twinseek never downloads at run time)."""


class VideoError(TwinseekError):
    """A video file cannot be ingested. The message always names the file."""

    reason = "cannot be read"

    def __init__(self, path: str | Path, detail: str = "") -> None:
        self.path = Path(path)
        self.detail = detail
        message = f"{self.path}: {self.reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[VideoError], tuple[Path, str]]:
        # rebuilt from its own arguments: an error from a worker process or Ray actor keeps its message
        return type(self), (self.path, self.detail)


class UnsupportedFormatError(VideoError):
    reason = "unsupported video format"


class CorruptVideoError(VideoError):
    reason = "corrupt or undecodable video"


class EmptyVideoError(VideoError):
    reason = "video has no decodable frames"


class VideoTooLargeError(VideoError):
    reason = "video exceeds the configured size limits"


class StoreError(TwinseekError):
    """The twin store is missing, locked by another writer, or inconsistent."""


class StoreBusyError(StoreError):
    """Another writer held the store's writer lock longer than the caller was willing to wait."""


class VideoNotFoundError(StoreError):
    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        super().__init__(f"no video with id {video_id!r} in the store")

    def __reduce__(self) -> tuple[type[VideoNotFoundError], tuple[str]]:
        return type(self), (self.video_id,)

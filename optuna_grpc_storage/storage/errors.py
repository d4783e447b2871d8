"""Errors the client raises, each saying what to do about it."""

from __future__ import annotations


class GrpcStorageError(Exception):
    """Base of every error raised by optuna_grpc_storage."""


class AuthenticationError(GrpcStorageError, PermissionError):
    """The proxy refused the token (missing, wrong or revoked)."""


class ProxyUnavailableError(GrpcStorageError, ConnectionError):
    """The proxy (or the Redis behind it) could not be reached before the retry deadline."""


class RequestRejectedError(GrpcStorageError, ValueError):
    """The proxy refused the request itself (malformed, too large, out of range)."""

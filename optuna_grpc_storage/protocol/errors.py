"""The one exception that refuses a request with a status code and a message a person can act
on; raised by the rules of this package and by the proxy's handlers. Nothing has been written
when it is raised."""

from __future__ import annotations

import grpc

RETRY_AFTER_KEY = "retry-after-ms"  # trailing metadata of a refusal that may pass if retried


class RequestError(Exception):
    """Refuse the current call with `code` and `message`; nothing has been written. With
    `retry_after` (seconds), the same request may succeed after that delay (a rate or
    concurrency limit): clients wait that long, then retry."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retry_after_ms(self) -> int:
        return 0 if self.retry_after is None else max(1, round(self.retry_after * 1000))


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def too_large(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

"""The one exception that refuses a request with a status code and a message a person can act
on; raised by the rules of this package and by the proxy's handlers. Nothing has been written
when it is raised."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """Refuse the current call with `code` and `message`; nothing has been written."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def too_large(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

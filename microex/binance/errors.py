"""Binance error codes and the one exception every handler raises for a client error.

A handler raises `ApiError(code, msg)`; the app's middleware turns it into
`{"code": code, "msg": msg}` with the HTTP status Binance uses for it (4XX for the
client's faults; 401 for a bad API key, 404 for an unknown route). Anything else a
handler raises is a bug: the middleware logs it and answers -1000 UNKNOWN with a 400
(never a 500, so fuzzers and clients always get Binance's error shape).
"""

from __future__ import annotations

UNKNOWN = -1000
DISCONNECTED = -1001
UNAUTHORIZED = -1002
TOO_MANY_REQUESTS = -1003
UNEXPECTED_RESP = -1006
TIMEOUT = -1007
INVALID_MESSAGE = -1013
UNKNOWN_ORDER_COMPOSITION = -1014
TOO_MANY_ORDERS = -1015
UNSUPPORTED_OPERATION = -1020
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
ILLEGAL_CHARS = -1100
TOO_MANY_PARAMETERS = -1101
MANDATORY_PARAM_EMPTY_OR_MALFORMED = -1102
UNKNOWN_PARAM = -1103
UNREAD_PARAMETERS = -1104
PARAM_EMPTY = -1105
PARAM_NOT_REQUIRED = -1106
BAD_PRECISION = -1111
INVALID_TIF = -1115
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
EMPTY_NEW_CL_ORD_ID = -1118
BAD_INTERVAL = -1120
BAD_SYMBOL = -1121
INVALID_LISTEN_KEY = -1125
MORE_THAN_XX_HOURS = -1127
OPTIONAL_PARAMS_BAD_COMBO = -1128
INVALID_PARAMETER = -1130
BAD_RECV_WINDOW = -1131
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FMT = -2014
REJECTED_MBX_KEY = -2015

_STATUS = {UNAUTHORIZED: 401, BAD_API_KEY_FMT: 401, REJECTED_MBX_KEY: 401, TOO_MANY_REQUESTS: 429, TOO_MANY_ORDERS: 429}


class ApiError(Exception):
    """A client error with Binance's code and message."""

    def __init__(self, code: int, msg: str, status: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status or _STATUS.get(code, 400)

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> ApiError:
    return ApiError(MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str, why: str = "") -> ApiError:
    return ApiError(ILLEGAL_CHARS, f"Illegal characters found in parameter '{name}'" + (f"; {why}" if why else "."))


def invalid_symbol() -> ApiError:
    return ApiError(BAD_SYMBOL, "Invalid symbol.")


def no_such_order() -> ApiError:
    return ApiError(NO_SUCH_ORDER, "Order does not exist.")

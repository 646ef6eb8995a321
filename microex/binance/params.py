"""Request parameters: the query string and the form body merged, each read with Binance's rules.

How it works: `Params.parse(raw_query, raw_body)` splits both (application/x-www-form-urlencoded),
keeping the raw strings for the signature check (auth.py). A name given twice is
-1101; a mandatory one missing or empty is -1102; an optional integer sent empty is
-1105; a value outside its type or range is -1100 naming the legal range. Readers
return Python values; nothing here knows about ticks or lots (units.py does).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from microex.binance import errors as E

INT_RE = re.compile(r"-?[0-9]{1,20}")
CLIENT_ID_RE = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")


class Params:
    def __init__(self, values: dict[str, str], raw_query: str = "", raw_body: str = "") -> None:
        self.values = values
        self.raw_query = raw_query
        self.raw_body = raw_body

    @classmethod
    def parse(cls, raw_query: str, raw_body: str = "") -> Params:
        values: dict[str, str] = {}
        for raw in (raw_query, raw_body):
            if not raw:
                continue
            try:
                pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
            except (UnicodeDecodeError, ValueError):
                raise E.ApiError(E.ILLEGAL_CHARS, "Illegal characters found in a parameter.") from None
            for k, v in pairs:
                if k in values:
                    raise E.ApiError(E.TOO_MANY_PARAMETERS, f"Duplicate values for parameter '{k}'.")
                values[k] = v
        return cls(values, raw_query, raw_body)

    def __contains__(self, name: str) -> bool:
        return bool(self.values.get(name))

    def str(self, name: str, required: bool = False, default: str | None = None) -> str | None:
        v = self.values.get(name)
        if v is None or v == "":
            if required:
                raise E.mandatory(name)
            return default
        return v

    def int(self, name: str, required: bool = False, default: int | None = None, lo: int | None = None,
            hi: int | None = None) -> int | None:
        if not required and self.values.get(name) == "":  # sent empty: not the default (schemathesis found it)
            raise E.ApiError(E.PARAM_EMPTY, f"Parameter '{name}' was empty.")
        v = self.str(name, required)
        if v is None:
            return default
        if not INT_RE.fullmatch(v):
            raise E.illegal(name, "legal range is '^[0-9]{1,20}$'.")
        n = int(v)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise E.illegal(name, f"legal range is '{lo if lo is not None else ''}..{hi if hi is not None else ''}'.")
        return n

    def enum(self, name: str, allowed: tuple[str, ...], required: bool = False, default: str | None = None,
             code: int = E.ILLEGAL_CHARS) -> str | None:
        v = self.str(name, required)
        if v is None:
            return default
        if v not in allowed:
            raise E.ApiError(code, f"Illegal characters found in parameter '{name}'; legal range is "
                                   f"'{', '.join(allowed)}'.")
        return v

    def bool(self, name: str, default: bool = False) -> bool:
        v = self.str(name)
        if v is None:
            return default
        if v.upper() not in ("TRUE", "FALSE"):
            raise E.illegal(name, "legal range is 'TRUE, FALSE'.")
        return v.upper() == "TRUE"

    def client_id(self, name: str) -> str | None:
        v = self.values.get(name)
        if v is None:
            return None
        if not CLIENT_ID_RE.fullmatch(v):
            raise E.illegal(name, "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        return v

    def limit(self, default: int, hi: int, lo: int = 1) -> int:
        return self.int("limit", default=default, lo=lo, hi=hi)

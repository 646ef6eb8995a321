"""The Binance-Spot-compatible HTTP edge of `microex serve` (issue #6): REST under /api/v3,
market streams at /ws and /stream, user data over /ws-api/v3 and listenKeys.

One process (`process.py`) runs it: a read replica of the engine fed from the journal
(`tailer.py`, `replica.py`), the account/order history and market state fed from the
replica's events (`history.py`, `market.py`), and an aiohttp server (`app.py`) whose
handlers convert Binance's decimal strings to ticks and lots at the edge (`units.py`):
nothing Binance-shaped reaches microex/core/. docs/binance-api.md describes the API.
"""

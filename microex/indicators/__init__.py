"""Technical indicators equal to TA-Lib's, numba-compiled, in batch and streaming forms.

Batch (numpy float64 arrays in, arrays aligned to the input out, NaN in the warm-up exactly
where TA-Lib puts it; TA-Lib's argument order):
    sma(x, n), ema(x, n), rsi(x, n), macd(x, fast=12, slow=26, signal=9) -> (macd, signal, hist),
    bollinger(x, n=20, k=2.0) -> (upper, middle, lower), atr(high, low, close, n),
    vwap(price, volume), book_imbalance(bid_qty, ask_qty)
Streaming (state for many instruments in preallocated arrays; one call updates many):
    SmaStream, EmaStream, RsiStream, MacdStream, BollingerStream, AtrStream, VwapStream,
    ImbalanceStream: Stream(n_instruments, params).update(instrument_ids, values...) -> outputs
An instrument's k-th streaming output is the batch output at index k of its own series.
See docs/indicators.md.
"""

from microex.indicators.macd_batch import macd
from microex.indicators.moving import ema, sma
from microex.indicators.oscillators import rsi
from microex.indicators.stream_base import Stream
from microex.indicators.streams_moving import EmaStream, MacdStream, SmaStream
from microex.indicators.streams_oscillators import RsiStream
from microex.indicators.streams_volatility import AtrStream, BollingerStream
from microex.indicators.streams_volume import ImbalanceStream, VwapStream
from microex.indicators.volatility import atr, bollinger
from microex.indicators.volume import book_imbalance, vwap

__all__ = [
    "sma", "ema", "rsi", "macd", "bollinger", "atr", "vwap", "book_imbalance",
    "Stream", "SmaStream", "EmaStream", "RsiStream", "MacdStream", "BollingerStream", "AtrStream",
    "VwapStream", "ImbalanceStream",
]

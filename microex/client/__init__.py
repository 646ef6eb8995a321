"""microex.client: the async client SDK over the binary protocol.

    client = await Client.connect("127.0.0.1", 9001, api_key, on_report=print)
    ack = await client.place(1, Side.BUY, 100, 5)          # EXEC_ACCEPTED or EXEC_REJECTED
    await client.modify(ack.client_order_id, 101, 3)
    await client.cancel(ack.client_order_id)
    await client.close()

`ClientProtocol` is the sans-I/O core (bytes in, events out) for users that do their own I/O.
"""

from microex.client.client import Client, LoginError, OpenOrder
from microex.client.protocol import (
    ClientProtocol,
    ClientState,
    ExecReport,
    ExecReports,
    Heartbeat,
    LoginAccepted,
    LoginRejected,
    Logout,
    ProtocolError,
    ProtocolStateError,
    ProtocolViolation,
    order_records,
    reason_name,
)
from microex.core.records import Flag, OrdType, Reason, Side, Tif
from microex.protocol.binary import Liquidity, MsgType

__all__ = [
    "Client", "LoginError", "OpenOrder",
    "ClientProtocol", "ClientState", "ExecReport", "ExecReports", "Heartbeat", "LoginAccepted", "LoginRejected",
    "Logout", "ProtocolError", "ProtocolStateError", "ProtocolViolation", "order_records", "reason_name",
    "Flag", "OrdType", "Reason", "Side", "Tif", "Liquidity", "MsgType",
]

#!/usr/bin/env python3
"""A Python grpcio client against a running `maxx run`: the ExecutionService contract
(proto/execution.proto) and server reflection, from outside the Rust code base.

Run by tests/cli_orders.rs, which starts `maxx run`, generates the stubs from the .proto files
with `python3 -m grpc_tools.protoc` into a temporary directory put on PYTHONPATH, and checks
this script's exit status and output:

    exec_client.py --grpc HOST:PORT --http HOST:PORT --token TOKEN

Each check prints one `ok <name>` line; the first failed check prints `FAIL <name>: <why>` and
exits 1. Waits are bounded (DEADLINE) and poll a condition; nothing sleeps to synchronise.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from decimal import ROUND_FLOOR, Decimal

import grpc
from google.protobuf import descriptor_pb2

import execution_pb2 as pb
import execution_pb2_grpc as pb_grpc

DEADLINE = 60.0
CALL_TIMEOUT = 30.0
CHECKS = []


class Failed(Exception):
    pass


def ok(name):
    CHECKS.append(name)
    print(f"ok {name}", flush=True)


def expect(cond, what):
    if not cond:
        raise Failed(what)


def expect_code(name, call, code, needle=None):
    """Runs `call`, which must fail with `code` (and a message containing `needle`)."""
    try:
        reply = call()
    except grpc.RpcError as e:
        expect(e.code() == code, f"{name}: expected {code.name}, got {e.code().name}: {e.details()}")
        if needle is not None:
            expect(needle in (e.details() or ""), f"{name}: {e.details()!r} lacks {needle!r}")
        return e
    raise Failed(f"{name}: expected {code.name}, got an answer: {reply}")


def expect_executed(name, ack):
    """A market order of 0.001 filled whole (FILLED), or partly with the rest cancelled
    (CANCELLED: the paper venue fills against the displayed size)."""
    if ack.status == pb.ORDER_STATUS_FILLED:
        expect(ack.filled_qty == "0.001" and ack.avg_price, f"{name}: {ack}")
    else:
        expect(ack.status == pb.ORDER_STATUS_CANCELLED, f"{name}: neither filled nor partly filled: {ack}")
        expect(Decimal(ack.filled_qty) > 0 and ack.avg_price, f"{name}: nothing executed: {ack}")


def poll(what, attempt):
    """Calls `attempt()` until it returns something other than None, within DEADLINE."""
    end = time.monotonic() + DEADLINE
    last = None
    while time.monotonic() < end:
        result, last = attempt()
        if result is not None:
            return result
        time.sleep(0.1)
    raise Failed(f"timed out waiting for {what}; last seen: {last}")


def http_post(addr, path, token, body=b""):
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=CALL_TIMEOUT) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def http_get(addr, path):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=CALL_TIMEOUT) as r:
        return json.loads(r.read())


def reflection_names(channel, version):
    """Lists services and fetches execution.proto through grpc.reflection.<version> by hand:
    requests and answers are encoded here, so no grpcio-reflection package is needed."""
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    call = channel.stream_stream(method, request_serializer=None, response_deserializer=None)

    def field(tag, payload):
        # Length-delimited field `tag`, for payloads under 128 bytes.
        return bytes([tag << 3 | 2, len(payload)]) + payload

    requests = [field(7, b""), field(4, b"maxx.v1.ExecutionService")]
    answers = list(call(iter(requests), timeout=CALL_TIMEOUT))
    expect(len(answers) == 2, f"reflection {version}: {len(answers)} answers")
    services = set()
    files = []
    for raw in answers:
        for tag, value in fields(raw):
            if tag == 6:  # list_services_response { repeated ServiceResponse service = 1 }
                for t, svc in fields(value):
                    if t == 1:
                        services.update(v.decode() for tt, v in fields(svc) if tt == 1)
            elif tag == 4:  # file_descriptor_response { repeated bytes file_descriptor_proto = 1 }
                for t, fd in fields(value):
                    if t == 1:
                        files.append(descriptor_pb2.FileDescriptorProto.FromString(fd))
            elif tag == 7:  # error_response
                raise Failed(f"reflection {version}: error {value!r}")
    return services, files


def fields(raw):
    """(tag, bytes) of the length-delimited fields of a protobuf message; skips varints."""
    out, i = [], 0
    while i < len(raw):
        key, i = varint(raw, i)
        tag, wire = key >> 3, key & 7
        if wire == 2:
            n, i = varint(raw, i)
            out.append((tag, raw[i : i + n]))
            i += n
        elif wire == 0:
            _, i = varint(raw, i)
        else:
            raise Failed(f"unexpected wire type {wire}")
    return out


def varint(raw, i):
    shift = value = 0
    while True:
        b = raw[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    auth = [("authorization", f"Bearer {args.token}")]
    channel = grpc.insecure_channel(args.grpc)
    stub = pb_grpc.ExecutionServiceStub(channel)
    submit = lambda req, md=auth: stub.SubmitOrder(req, metadata=md, timeout=CALL_TIMEOUT)
    cancel = lambda req, md=auth: stub.CancelOrder(req, metadata=md, timeout=CALL_TIMEOUT)

    # Reflection, both versions, lists both services and serves the schema.
    for version in ("v1", "v1alpha"):
        services, files = reflection_names(channel, version)
        for name in ("maxx.v1.ExecutionService", "maxx.v1.RiskService"):
            expect(name in services, f"reflection {version}: {name} not in {sorted(services)}")
        fd = next((f for f in files if f.name == "execution.proto"), None)
        expect(fd is not None, f"reflection {version}: no execution.proto in {[f.name for f in files]}")
        methods = [m.name for s in fd.service for m in s.method]
        expect(methods == ["SubmitOrder", "CancelOrder"], f"reflection {version}: methods {methods}")
    ok("reflection")

    market = lambda cid: pb.OrderRequest(
        client_order_id=cid, symbol="BTCUSDT", side=pb.SIDE_BUY, qty="0.001", type=pb.ORDER_TYPE_MARKET
    )

    # No token, or a wrong one: UNAUTHENTICATED, and nothing is placed.
    expect_code("submit without token", lambda: submit(market("py-noauth"), []), grpc.StatusCode.UNAUTHENTICATED)
    expect_code(
        "submit with a wrong token",
        lambda: submit(market("py-noauth"), [("authorization", "Bearer wrong")]),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    expect_code(
        "cancel without token",
        lambda: cancel(pb.CancelRequest(client_order_id="py-noauth"), []),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    ok("unauthenticated")

    # A marketable order executes at once. Until the engine has seen the market, Risk refuses
    # (no_price, feed_not_live), or nothing is displayed to take: each attempt uses a fresh id
    # (a final answer is final for its id).
    attempts = iter(range(1_000_000))

    def try_market():
        a = submit(market(f"py-mkt-{next(attempts)}"))
        if a.status == pb.ORDER_STATUS_REJECTED and a.reject_reason in ("no_price", "feed_not_live"):
            return None, a
        if a.status == pb.ORDER_STATUS_CANCELLED and a.filled_qty == "0":
            return None, a  # nothing displayed to take yet
        return a, a

    filled = poll("a market fill", try_market)
    expect_executed("market order", filled)
    expect(filled.order_id > 0 and filled.venue == "binance" and filled.venue_order_id, f"market order: {filled}")
    expect(filled.symbol == "BTCUSDT", f"market order: {filled}")
    ok("marketable order filled")

    # A buy limit 3% under the fill rests (inside the 5% price collar of the test config).
    price = (Decimal(filled.avg_price) * Decimal("0.97")).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    rest = pb.OrderRequest(
        client_order_id="py-rest-1",
        symbol="BTCUSDT",
        side=pb.SIDE_BUY,
        qty="0.001",
        price=str(price),
        type=pb.ORDER_TYPE_LIMIT,
        time_in_force=pb.TIME_IN_FORCE_GTC,
    )
    first = submit(rest)
    expect(first.status == pb.ORDER_STATUS_ACCEPTED, f"resting limit: {first}")
    expect(first.order_id > filled.order_id and first.venue_order_id, f"resting limit: {first}")
    expect(first.client_order_id == "py-rest-1" and first.filled_qty == "0", f"resting limit: {first}")
    ok("resting limit accepted")

    # The same request again: the same ack, no second order.
    again = submit(rest)
    expect(again == first, f"resubmission: {again} != {first}")
    ok("idempotent resubmission")

    changed = pb.OrderRequest()
    changed.CopyFrom(rest)
    changed.qty = "0.002"
    expect_code("changed resubmission", lambda: submit(changed), grpc.StatusCode.ALREADY_EXISTS, "py-rest-1")
    ok("changed resubmission refused")

    # Cancel it; cancelling again, or anything unknown, is refused.
    c = cancel(pb.CancelRequest(client_order_id="py-rest-1"))
    expect(c.cancelled and c.order_id == first.order_id, f"cancel: {c}")
    expect(c.client_order_id == "py-rest-1" and c.cancelled_qty == "0.001", f"cancel: {c}")
    ok("cancelled")
    expect_code(
        "cancel again by client id",
        lambda: cancel(pb.CancelRequest(client_order_id="py-rest-1")),
        grpc.StatusCode.FAILED_PRECONDITION,
        "already final",
    )
    expect_code(
        "cancel again by order id",
        lambda: cancel(pb.CancelRequest(order_id=first.order_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    expect_code(
        "cancel unknown client id",
        lambda: cancel(pb.CancelRequest(client_order_id="py-never-placed")),
        grpc.StatusCode.NOT_FOUND,
    )
    expect_code(
        "cancel unknown order id", lambda: cancel(pb.CancelRequest(order_id=987654321)), grpc.StatusCode.NOT_FOUND
    )
    expect_code("cancel without target", lambda: cancel(pb.CancelRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    ok("cancel refusals")

    # Every malformed field is INVALID_ARGUMENT, naming the field.
    def bad(**changes):
        r = pb.OrderRequest()
        r.CopyFrom(rest)
        r.client_order_id = "py-bad"
        for k, v in changes.items():
            setattr(r, k, v)
        return r

    cases = [
        ("unknown symbol", bad(symbol="DOGEUSDT"), "BTCUSDT, ETHUSDT"),
        ("huge symbol", bad(symbol="X" * 10_000), "symbol"),
        ("zero qty", bad(qty="0"), "qty"),
        ("negative qty", bad(qty="-0.001"), "qty"),
        ("NaN qty", bad(qty="NaN"), "qty"),
        ("exponent qty", bad(qty="1e-3"), "qty"),
        ("too many decimals", bad(qty="0.000000001"), "qty"),
        ("off-lot qty", bad(qty="0.000001"), "lot size"),
        ("empty qty", bad(qty=""), "qty"),
        ("huge qty", bad(qty="1" * 5_000), "qty"),
        ("limit without price", bad(price=""), "price"),
        ("market with price", bad(type=pb.ORDER_TYPE_MARKET, time_in_force=pb.TIME_IN_FORCE_UNSPECIFIED), "price"),
        ("off-tick price", bad(price="60000.005"), "tick size"),
        ("zero price", bad(price="0"), "price"),
        ("market GTC", bad(type=pb.ORDER_TYPE_MARKET, price=""), "GTC"),
        ("limit maker IOC", bad(type=pb.ORDER_TYPE_LIMIT_MAKER, time_in_force=pb.TIME_IN_FORCE_IOC), "time_in_force"),
        ("no side", bad(side=pb.SIDE_UNSPECIFIED), "side"),
        ("side out of range", bad(side=42), "side"),
        ("no type", bad(type=pb.ORDER_TYPE_UNSPECIFIED), "type"),
        ("unknown venue", bad(venue="nasdaq"), "venue"),
        ("venue not listing the symbol", bad(venue="coinbase"), "does not list BTCUSDT"),
        ("empty client id", bad(client_order_id=""), "client_order_id"),
        ("client id with a space", bad(client_order_id="py bad"), "client_order_id"),
        ("37-character client id", bad(client_order_id="p" * 37), "client_order_id"),
    ]
    for name, req, needle in cases:
        expect_code(name, lambda: submit(req), grpc.StatusCode.INVALID_ARGUMENT, needle)
    # None of them was entered: the id is still free and cannot be cancelled.
    expect_code(
        "bad requests leave nothing",
        lambda: cancel(pb.CancelRequest(client_order_id="py-bad")),
        grpc.StatusCode.NOT_FOUND,
    )
    expect_code(
        "oversized request",
        lambda: submit(bad(symbol="X" * 100_000)),
        grpc.StatusCode.OUT_OF_RANGE,
    )
    ok(f"invalid arguments ({len(cases)} cases)")

    # The kill switch: orders fail with FAILED_PRECONDITION, also when submitted again.
    status, body = http_post(args.http, "/risk/kill", args.token)
    expect(status == 200, f"POST /risk/kill: {status} {body}")
    for _ in range(2):
        expect_code("order while killed", lambda: submit(market("py-halted")), grpc.StatusCode.FAILED_PRECONDITION)
    ok("halted")

    # Resumed, orders fill again.
    status, body = http_post(args.http, "/risk/resume", args.token)
    expect(status == 200, f"POST /risk/resume: {status} {body}")

    def active():
        s = http_get(args.http, "/risk/state")["system"]
        return (True if s["state"] == "active" and not s["killed"] else None), s

    poll("ACTIVE after resume", active)
    expect_executed("after resume", submit(market("py-after-resume")))
    ok("resumed")

    print(f"exec_client: all {len(CHECKS)} checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)

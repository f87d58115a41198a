#!/usr/bin/env python3
"""Minimal CQL native-protocol health check (Python 3 standard library only).

Talks CQL binary protocol v4 over a plain TCP socket:

  1. OPTIONS  -> expects SUPPORTED (0x06)
  2. STARTUP {CQL_VERSION: 3.0.0} -> expects READY (0x02)
     (AUTHENTICATE (0x03) is reported as an error: the test node runs with
     AllowAllAuthenticator, see cassandra.sh)
  3. QUERY "SELECT release_version FROM system.local" at consistency ONE
     -> expects RESULT/Rows (0x08 / kind 2) and prints the single value.

Exit status: 0 when the node answered every step, 1 otherwise (reason on
stderr), 2 on bad usage. Used by `cassandra.sh wait` and `cassandra.sh status`.

Usage:
  cql_ping.py [--host 127.0.0.1] [--port 9042] [--timeout 5] [--no-query] [-q] [-v]

The port defaults to $CASSANDRA_PORT, else 9042.
"""

import argparse
import os
import socket
import struct
import sys

PROTOCOL_VERSION = 0x04  # request frames; responses come back with 0x84

OP_ERROR = 0x00
OP_STARTUP = 0x01
OP_READY = 0x02
OP_AUTHENTICATE = 0x03
OP_OPTIONS = 0x05
OP_SUPPORTED = 0x06
OP_QUERY = 0x07
OP_RESULT = 0x08

OPCODE_NAMES = {
    OP_ERROR: "ERROR",
    OP_STARTUP: "STARTUP",
    OP_READY: "READY",
    OP_AUTHENTICATE: "AUTHENTICATE",
    OP_OPTIONS: "OPTIONS",
    OP_SUPPORTED: "SUPPORTED",
    OP_QUERY: "QUERY",
    OP_RESULT: "RESULT",
}

CONSISTENCY_ONE = 0x0001
RESULT_KIND_ROWS = 0x0002

QUERY = "SELECT release_version FROM system.local"


class CqlError(Exception):
    pass


# --------------------------------------------------------------------------
# encoding helpers ([string], [long string], [string map])


def enc_string(s):
    b = s.encode("utf-8")
    return struct.pack(">H", len(b)) + b


def enc_long_string(s):
    b = s.encode("utf-8")
    return struct.pack(">i", len(b)) + b


def enc_string_map(m):
    out = struct.pack(">H", len(m))
    for k, v in m.items():
        out += enc_string(k) + enc_string(v)
    return out


# --------------------------------------------------------------------------
# decoding helpers


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise CqlError("truncated response body")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self):
        return self.take(1)[0]

    def short(self):
        return struct.unpack(">H", self.take(2))[0]

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        return self.take(self.short()).decode("utf-8", "replace")

    def bytes_(self):
        n = self.int()
        return None if n < 0 else self.take(n)

    def string_list(self):
        return [self.string() for _ in range(self.short())]

    def string_multimap(self):
        return {self.string(): self.string_list() for _ in range(self.short())}

    def option(self):
        """Skip a column type [option]; return its id."""
        type_id = self.short()
        if type_id == 0x0000:  # custom: [string] class name
            self.string()
        elif type_id in (0x0020, 0x0022):  # list, set
            self.option()
        elif type_id == 0x0021:  # map
            self.option()
            self.option()
        elif type_id == 0x0030:  # UDT
            self.string()  # keyspace
            self.string()  # type name
            for _ in range(self.short()):
                self.string()
                self.option()
        elif type_id == 0x0031:  # tuple
            for _ in range(self.short()):
                self.option()
        return type_id


# --------------------------------------------------------------------------
# framing


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise CqlError("connection closed by server after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def request(sock, stream, opcode, body=b""):
    header = struct.pack(">BBhBi", PROTOCOL_VERSION, 0x00, stream, opcode, len(body))
    sock.sendall(header + body)
    version, flags, rstream, ropcode, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    if version & 0x7F != PROTOCOL_VERSION or not version & 0x80:
        raise CqlError("unexpected response protocol version byte 0x%02x" % version)
    if length < 0 or length > 256 * 1024 * 1024:
        raise CqlError("implausible body length %d" % length)
    body = recv_exact(sock, length)
    if rstream != stream:
        raise CqlError("response for stream %d, expected %d" % (rstream, stream))
    r = Reader(body)
    if flags & 0x02:  # tracing id
        r.take(16)
    if flags & 0x04:  # custom payload
        for _ in range(r.short()):
            r.string()
            r.bytes_()
    if flags & 0x08:  # warnings
        r.string_list()
    if ropcode == OP_ERROR:
        code = r.int()
        msg = r.string()
        raise CqlError("server ERROR 0x%04x to %s: %s" % (code, OPCODE_NAMES.get(opcode, opcode), msg))
    return ropcode, r


def expect(opcode, got):
    if got != opcode:
        raise CqlError("expected %s, got opcode 0x%02x (%s)"
                       % (OPCODE_NAMES[opcode], got, OPCODE_NAMES.get(got, "?")))


def ping(host, port, timeout, run_query=True, verbose=False):
    """Return the release_version string (or "" if run_query is False)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        op, r = request(sock, 0, OP_OPTIONS)
        expect(OP_SUPPORTED, op)
        supported = r.string_multimap()
        if verbose:
            for k in sorted(supported):
                print("SUPPORTED %s = %s" % (k, ",".join(supported[k])), file=sys.stderr)

        op, r = request(sock, 1, OP_STARTUP, enc_string_map({"CQL_VERSION": "3.0.0"}))
        if op == OP_AUTHENTICATE:
            raise CqlError("server requires authentication (%s); the test node should run "
                           "AllowAllAuthenticator" % r.string())
        expect(OP_READY, op)
        if verbose:
            print("STARTUP -> READY", file=sys.stderr)
        if not run_query:
            return ""

        # QUERY: <query: long string><consistency: short><flags: byte>
        body = enc_long_string(QUERY) + struct.pack(">HB", CONSISTENCY_ONE, 0x00)
        op, r = request(sock, 2, OP_QUERY, body)
        expect(OP_RESULT, op)
        kind = r.int()
        if kind != RESULT_KIND_ROWS:
            raise CqlError("QUERY returned result kind %d, expected Rows (2)" % kind)
        flags = r.int()
        ncols = r.int()
        if flags & 0x0002:  # has_more_pages: paging state
            r.bytes_()
        if not flags & 0x0004:  # metadata present
            global_spec = flags & 0x0001
            if global_spec:
                r.string()
                r.string()
            for _ in range(ncols):
                if not global_spec:
                    r.string()
                    r.string()
                r.string()  # column name
                r.option()
        nrows = r.int()
        if nrows < 1 or ncols < 1:
            raise CqlError("system.local returned %d rows / %d columns" % (nrows, ncols))
        value = r.bytes_()
        for _ in range(ncols - 1):
            r.bytes_()
        if value is None:
            raise CqlError("release_version is null")
        return value.decode("utf-8", "replace")


def main(argv=None):
    p = argparse.ArgumentParser(description="CQL native protocol v4 ping (OPTIONS, STARTUP, QUERY).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("CASSANDRA_PORT", "9042")))
    p.add_argument("--timeout", type=float, default=5.0, help="socket timeout in seconds (default 5)")
    p.add_argument("--no-query", action="store_true", help="stop after READY")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success or failure")
    p.add_argument("-v", "--verbose", action="store_true", help="show the SUPPORTED options")
    a = p.parse_args(argv)
    try:
        version = ping(a.host, a.port, a.timeout, run_query=not a.no_query, verbose=a.verbose)
    except (OSError, CqlError) as e:
        if not a.quiet:
            print("cql_ping: %s:%d: %s" % (a.host, a.port, e), file=sys.stderr)
        return 1
    if not a.quiet:
        print(version if version else "READY")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exercises a xenstored through pyxs, an independent Python client.

Usage: /usr/bin/python3 pyxs_check.py SOCKET
Exits non-zero (with a traceback naming the failed check) on any mismatch.
"""
import errno
import sys

import pyxs
from pyxs.exceptions import PyXSError

socket_path = sys.argv[1]


def expect_error(code, fn, *args):
    try:
        fn(*args)
    except PyXSError as e:
        assert e.args[0] == code, (fn.__name__, args, e.args)
    else:
        raise AssertionError("%s%r should fail with %s" % (fn.__name__, args, errno.errorcode[code]))


with pyxs.Client(unix_socket_path=socket_path) as c:
    # Reads and writes, binary values included.
    c[b"/pyxs/a"] = b"1"
    # pyxs itself accepts only 7-bit values (nul included).
    c.write(b"/pyxs/bin", b"x\x00y\x7f")
    assert c[b"/pyxs/a"] == b"1"
    assert c.read(b"/pyxs/bin") == b"x\x00y\x7f"
    assert c.list(b"/pyxs") == [b"a", b"bin"], c.list(b"/pyxs")
    assert c.exists(b"/pyxs/a") and not c.exists(b"/pyxs/nope")
    expect_error(errno.ENOENT, c.read, b"/pyxs/nope")
    c.mkdir(b"/pyxs/dir/sub")
    assert c.read(b"/pyxs/dir/sub") == b""
    c.delete(b"/pyxs/dir")
    assert not c.exists(b"/pyxs/dir/sub")

    # Permissions.
    assert c.get_perms(b"/pyxs/a") == [b"n0"]
    c.set_perms(b"/pyxs/a", [b"b0", b"r3", b"w4"])
    assert c.get_perms(b"/pyxs/a") == [b"b0", b"r3", b"w4"]
    expect_error(errno.ENOENT, c.set_perms, b"/pyxs/nope", [b"b0"])
    expect_error(errno.ENOENT, c.get_perms, b"/pyxs/nope")

    # Domain helpers.
    assert c.get_domain_path(7) == b"/local/domain/7"
    assert c.is_domain_introduced(0)

    # Transactions: commit, abort, conflict.
    c.transaction()
    c[b"/pyxs/tx"] = b"in-tx"
    assert c.commit()
    assert c[b"/pyxs/tx"] == b"in-tx"
    c.transaction()
    c[b"/pyxs/tx"] = b"aborted"
    c.rollback()
    assert c[b"/pyxs/tx"] == b"in-tx"
    with pyxs.Client(unix_socket_path=socket_path) as other:
        c.transaction()
        assert c[b"/pyxs/tx"] == b"in-tx"
        c[b"/pyxs/tx"] = b"mine"
        other[b"/pyxs/tx"] = b"theirs"
        assert not c.commit(), "a conflicting commit must fail with EAGAIN"
        assert c[b"/pyxs/tx"] == b"theirs"

    # Watches: the initial event, then one per change below the path.
    m = c.monitor()
    m.watch(b"/pyxs/w", b"tok")
    events = m.wait()
    assert next(events) == (b"/pyxs/w", b"tok")
    with pyxs.Client(unix_socket_path=socket_path) as writer:
        writer[b"/pyxs/w/x"] = b"1"
        writer.delete(b"/pyxs/w")
    assert next(events) == (b"/pyxs/w/x", b"tok")
    assert next(events) == (b"/pyxs/w", b"tok")
    m.unwatch(b"/pyxs/w", b"tok")

    c.delete(b"/pyxs")
    assert not c.exists(b"/pyxs")

print("pyxs: all checks passed")

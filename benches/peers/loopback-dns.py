#!/usr/bin/env python3
"""A DNS responder on a loopback address for the federation benchmark's peers.

    loopback-dns.py LISTEN_IP PORT DOMAIN=IP [DOMAIN=IP ...]

For each DOMAIN it answers SRV _xmpp-server._tcp.DOMAIN with port 5269 and the address
itself as the target (written as a name, "127.0.0.36.", which resolvers that parse
address literals take without another query: ejabberd does), and A DOMAIN with IP.
Every other name is NXDOMAIN; AAAA and other types of a known name have no data.
Loopback only: it refuses to bind anything else. Runs until killed.
"""
import socket
import struct
import sys


def labels(name):
    out = b""
    for part in name.strip(".").split("."):
        out += bytes([len(part)]) + part.encode()
    return out + b"\0"


def read_name(msg, i):
    parts = []
    while msg[i] != 0:
        n = msg[i]
        parts.append(msg[i + 1:i + 1 + n].decode(errors="replace"))
        i += 1 + n
    return ".".join(parts).lower(), i + 1


def main():
    ip, port = sys.argv[1], int(sys.argv[2])
    if not ip.startswith("127."):
        sys.exit("loopback addresses only")
    table = dict(a.split("=", 1) for a in sys.argv[3:])
    table = {k.lower().strip("."): v for k, v in table.items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    while True:
        msg, peer = s.recvfrom(1500)
        try:
            (qid, _flags, qd) = struct.unpack(">HHH", msg[:6])
            if qd != 1:
                continue
            name, i = read_name(msg, 12)
            qtype, _qclass = struct.unpack(">HH", msg[i:i + 4])
            question = msg[12:i + 4]
        except (struct.error, IndexError):
            continue
        answers = []
        known = False
        for dom, addr in table.items():
            if name == "_xmpp-server._tcp." + dom:
                known = True
                if qtype == 33:  # SRV
                    rdata = struct.pack(">HHH", 0, 0, 5269) + labels(addr)
                    answers.append(struct.pack(">HHHIH", 0xC00C, 33, 1, 60, len(rdata)) + rdata)
            elif name == dom:
                known = True
                if qtype == 1:  # A
                    rdata = socket.inet_aton(addr)
                    answers.append(struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + rdata)
        rcode = 0 if known else 3
        head = struct.pack(">HHHHHH", qid, 0x8580 | rcode, 1, len(answers), 0, 0)
        s.sendto(head + question + b"".join(answers), peer)


if __name__ == "__main__":
    main()

"""Drive OpenSSL's s_client (from Debian) against xmppd, for TLS details the Rust
clients cannot show: KeyUpdate with and without update_requested, and the server's
own KeyUpdate as seen in s_client's -msg trace.

usage: s_client_tls.py keyupdate PORT DOMAIN USER PASSWORD [extra s_client args...]
       s_client_tls.py tls12 PORT DOMAIN USER PASSWORD [refused]
(tls12: Python's ssl limited to TLS 1.2 logs in and pings, or expects to be refused)
Connects to 127.0.0.1:PORT (direct TLS) only; trusts the CA in $SSL_CERT_FILE.
Prints one line per observation; exits non-zero on failure.
"""
import base64
import os
import select
import socket
import ssl
import subprocess
import sys
import time


class SClient:
    def __init__(self, port, domain, extra):
        cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
               "-servername", domain, "-CAfile", os.environ["SSL_CERT_FILE"],
               "-verify_return_error", "-msg"] + extra
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.out = b""
        self.seen = 0  # everything before this offset was consumed by wait()

    def send(self, text):
        self.p.stdin.write(text.encode() + b"\n")
        self.p.stdin.flush()

    def command(self, letter):
        """An s_client command letter (k: KeyUpdate, K: KeyUpdate update_requested)."""
        time.sleep(0.3)  # its own read from stdin
        self.p.stdin.write(letter.encode() + b"\n")
        self.p.stdin.flush()
        time.sleep(0.3)

    def wait(self, needle, timeout=10):
        """Read until `needle` appears after the last wait; returns the text read."""
        deadline = time.time() + timeout
        while True:
            i = self.out.find(needle.encode(), self.seen)
            if i >= 0:
                text = self.out[self.seen:i + len(needle)].decode(errors="replace")
                self.seen = i + len(needle)
                return text
            left = deadline - time.time()
            if left <= 0:
                raise SystemExit(f"timed out waiting for {needle!r}; got:\n"
                                 + self.out[self.seen:].decode(errors="replace"))
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    raise SystemExit(f"s_client ended waiting for {needle!r}; got:\n"
                                     + self.out[self.seen:].decode(errors="replace"))
                self.out += chunk

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()


def header(domain):
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")


def login(c, domain, user, password):
    c.send(header(domain))
    c.wait("</stream:features>")
    ir = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{ir}</auth>")
    c.wait("<success")
    c.send(header(domain))
    c.wait("</stream:features>")
    c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    c.wait("</iq>")


def ping(c, n, domain):
    c.send(f"<iq type='get' id='ping{n}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>")
    return c.wait(f"id='ping{n}'")


def keyupdate(port, domain, user, password, extra):
    c = SClient(port, domain, extra)
    login(c, domain, user, password)
    print("logged in")
    ping(c, 0, domain)
    c.command("k")
    text = ping(c, 1, domain)
    if ">>> TLS 1.3, Handshake [length 0005], KeyUpdate" not in text:
        raise SystemExit("s_client sent no KeyUpdate:\n" + text)
    if "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" in text:
        raise SystemExit("the server answered update_not_requested:\n" + text)
    print("k: KeyUpdate sent, ping answered")
    c.command("K")
    text = ping(c, 2, domain)
    if ">>> TLS 1.3, Handshake [length 0005], KeyUpdate" not in text:
        raise SystemExit("s_client sent no KeyUpdate:\n" + text)
    if "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" not in text:
        raise SystemExit("no KeyUpdate from the server:\n" + text)
    print("K: KeyUpdate sent, the server's KeyUpdate received, ping answered")
    ping(c, 3, domain)
    print("chat continues")
    c.close()


class PySsl:
    """The same waits and sends over Python's ssl module."""

    def __init__(self, sock):
        self.s = sock
        self.out = b""
        self.seen = 0

    def send(self, text):
        self.s.sendall(text.encode())

    def wait(self, needle, timeout=10):
        self.s.settimeout(timeout)
        while True:
            i = self.out.find(needle.encode(), self.seen)
            if i >= 0:
                text = self.out[self.seen:i + len(needle)].decode(errors="replace")
                self.seen = i + len(needle)
                return text
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit(f"closed waiting for {needle!r}")
            self.out += chunk


def tls12(port, domain, user, password, expect_refused):
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s = ctx.wrap_socket(raw, server_hostname=domain)
    except ssl.SSLError as e:
        if expect_refused:
            print(f"refused: {e.reason}")
            return
        raise
    if expect_refused:
        raise SystemExit(f"TLS 1.2 accepted: {s.version()}")
    print(f"version {s.version()} cipher {s.cipher()[0]}")
    c = PySsl(s)
    login(c, domain, user, password)
    print("logged in")
    for n in range(3):
        ping(c, n, domain)
    print("ping answered")
    s.unwrap()  # our close_notify, and the server's answer
    print("closed with close_notify both ways")


def main():
    scenario, port, domain, user, password = sys.argv[1:6]
    extra = sys.argv[6:]
    if scenario == "keyupdate":
        keyupdate(int(port), domain, user, password, extra)
    elif scenario == "tls12":
        tls12(int(port), domain, user, password, extra == ["refused"])
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()

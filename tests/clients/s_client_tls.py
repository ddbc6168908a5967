"""Drive OpenSSL's s_client (from Debian) against xmppd, for TLS details the Rust
clients cannot show: KeyUpdate with and without update_requested, and the server's
own KeyUpdate as seen in s_client's -msg trace.

usage: s_client_tls.py keyupdate PORT DOMAIN USER PASSWORD [extra s_client args...]
Connects to 127.0.0.1:PORT (direct TLS) only; trusts the CA in $SSL_CERT_FILE.
Prints one line per observation; exits non-zero on failure.
"""
import base64
import os
import select
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


def main():
    scenario, port, domain, user, password = sys.argv[1:6]
    extra = sys.argv[6:]
    if scenario == "keyupdate":
        keyupdate(int(port), domain, user, password, extra)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main()

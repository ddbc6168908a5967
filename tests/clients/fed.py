"""Federation scenarios with slixmpp (from PyPI): one user on xmppd, one on another
server (Prosody), driven by tests/federation.rs.

usage: fed.py SCENARIO XMPPD_PORT XMPPD_DOMAIN PEER_IP PEER_PORT PEER_DOMAIN
Connects only to loopback addresses; trusts the CA in $SSL_CERT_FILE for xmppd and
accepts the peer's self-signed certificate. Prints one line per observation.
"""
import asyncio
import os
import ssl
import sys

import slixmpp


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, host, port, verify=True):
        super().__init__(jid, password)
        self.host, self.port = host, port
        self.use_aiodns = False
        if verify:
            self.ca_certs = os.environ["SSL_CERT_FILE"]
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.ssl_context = ctx
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.online = asyncio.get_event_loop().create_future()
        self.inbox = asyncio.Queue()
        self.seen = set()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("presence_available", lambda p: self.seen.add(p["from"].bare))
        self.add_event_handler("failed_auth", lambda e: self._fail("authentication failed"))
        self.add_event_handler("disconnected", lambda e: self._fail("disconnected"))

    def _fail(self, why):
        if not self.online.done():
            self.online.set_exception(RuntimeError(why))

    async def _start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)

    async def go(self):
        self.connect(self.host, self.port)
        await asyncio.wait_for(self.online, 20)
        print(f"online {self.boundjid}")


async def wait_until(check, what, timeout=20):
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def sub(client, jid):
    item = client.client_roster[jid] if jid in client.client_roster else None
    return item["subscription"] if item is not None else "none"


async def both(xport, xdomain, pip, pport, pdomain):
    alice = Client(f"alice@{xdomain}/slix", "alice-pw", "127.0.0.1", xport, verify=False)
    bob = Client(f"bob@{pdomain}/slix", "pw", pip, pport, verify=False)
    for c in (alice, bob):
        c.roster.auto_authorize = True
        c.roster.auto_subscribe = True
    await alice.go()
    await bob.go()
    a, b = f"alice@{xdomain}", f"bob@{pdomain}"
    # chat both ways
    alice.send_message(mto=b, mbody="hello from xmppd", mtype="chat")
    m = await asyncio.wait_for(bob.inbox.get(), 30)
    print(f"bob got {m['type']} from {m['from']}: {m['body']}")
    bob.send_message(mto=m["from"], mbody="hello from the peer", mtype="chat")
    m = await asyncio.wait_for(alice.inbox.get(), 30)
    print(f"alice got {m['type']} from {m['from']}: {m['body']}")
    # subscription both ways (each side's client accepts and subscribes back)
    alice.send_presence(pto=b, ptype="subscribe")
    await wait_until(lambda: sub(alice, b) == "both" and sub(bob, a) == "both", "mutual subscription")
    print(f"alice sees bob as {sub(alice, b)}; bob sees alice as {sub(bob, a)}")
    await wait_until(lambda: b in alice.seen and a in bob.seen, "presence both ways")
    print("presence seen both ways")
    # iq to the remote server, both ways
    v = await bob.plugin["xep_0092"].get_version(xdomain, timeout=20)
    print(f"bob asked {xdomain}: {v['software_version']['name']}")
    v = await alice.plugin["xep_0092"].get_version(pdomain, timeout=20)
    print(f"alice asked {pdomain}: {v['software_version']['name']}")
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.3)


async def main():
    scenario, xport, xdomain, pip, pport, pdomain = sys.argv[1:7]
    await {"both": both}[scenario](int(xport), xdomain, pip, int(pport), pdomain)


if __name__ == "__main__":
    asyncio.run(main())

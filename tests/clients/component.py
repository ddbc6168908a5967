"""A trusted component written with slixmpp's ComponentXMPP (XEP-0114), and a slixmpp
client talking to it through the server, driven by tests/components.rs.

usage: component.py PORT DOMAIN COMPONENT SECRET
Connects to 127.0.0.1:PORT only (no DNS); trusts the CA in $SSL_CERT_FILE.
Prints one line per observation; exits non-zero on failure.
"""
import asyncio
import os
import sys

import slixmpp
from slixmpp import ComponentXMPP


class Echo(ComponentXMPP):
    """Echoes messages back, accepts every subscription and shows its users online."""

    def __init__(self, name, secret, port):
        super().__init__(name, secret, "127.0.0.1", port)
        self.use_aiodns = False
        self.register_plugin("xep_0030")
        self["xep_0030"].add_identity(category="gateway", itype="echo", name="Echo")
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.ready.set_result(True))
        self.add_event_handler("message", self._message)
        self.add_event_handler("presence_subscribe", self._subscribe)

    def _message(self, m):
        if m["type"] == "error":
            return
        print(f"component got {m['type']} from {m['from']} to {m['to']}: {m['body']}", flush=True)
        m.reply(f"echo: {m['body']}").send()

    def _subscribe(self, p):
        print(f"component got subscribe from {p['from']} to {p['to']}", flush=True)
        self.send_presence(pto=p["from"].bare, pfrom=p["to"].bare, ptype="subscribed")
        self.send_presence(pto=p["from"].bare, pfrom=p["to"].bare + "/echo", pshow="chat")


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port):
        super().__init__(jid, password)
        self.port = port
        self.use_aiodns = False
        self.ca_certs = os.environ["SSL_CERT_FILE"]
        self.register_plugin("xep_0030")
        self.online = asyncio.get_event_loop().create_future()
        self.inbox = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        # available presence, whatever its show (slixmpp's type is the show then)
        self.add_event_handler(
            "presence",
            lambda p: p["type"] in ("available",) + tuple(p.showtypes) and self.presences.put_nowait(p),
        )
        self.add_event_handler("failed_auth", lambda e: self._fail("authentication failed"))

    def _fail(self, why):
        if not self.online.done():
            self.online.set_exception(RuntimeError(why))

    async def _start(self, _):
        await self.get_roster()
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)

    async def go(self):
        self.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.online, 15)


async def main(port, domain, name, secret):
    comp = Echo(name, secret, port)
    comp.connect()
    await asyncio.wait_for(comp.ready, 15)
    print(f"component {name} connected", flush=True)

    alice = Client(f"alice@{domain}/slix", "alice-pw", port)
    await alice.go()

    alice.send_message(mto=f"echo@{name}", mbody="hello component", mtype="chat")
    m = await asyncio.wait_for(alice.inbox.get(), 10)
    print(f"alice got {m['type']} from {m['from']}: {m['body']}", flush=True)

    info = await alice["xep_0030"].get_info(jid=name, timeout=10)
    ids = info["disco_info"]["identities"]
    print(f"alice sees identities {sorted((c, t, n) for c, t, _, n in ids)}", flush=True)

    items = await alice["xep_0030"].get_items(jid=domain, timeout=10)
    print(f"server items {sorted(i[0] for i in items['disco_items']['items'])}", flush=True)

    alice.send_presence(pto=f"echo@{name}", ptype="subscribe")
    while True:
        p = await asyncio.wait_for(alice.presences.get(), 10)
        if p["from"].bare == f"echo@{name}":
            print(f"alice sees {p['from']} available show={p['show']}", flush=True)
            break
    # the roster push may come after the contact's presence
    item = alice.client_roster[f"echo@{name}"]
    for _ in range(50):
        if item["subscription"] == "to":
            break
        await asyncio.sleep(0.1)
    print(f"alice's roster has echo@{name} as {item['subscription']}", flush=True)

    comp.disconnect()
    await asyncio.sleep(0.5)
    errors = asyncio.Queue()
    alice.add_event_handler("message_error", lambda m: errors.put_nowait(m))
    alice.send_message(mto=f"echo@{name}", mbody="anyone?", mtype="chat")
    e = await asyncio.wait_for(errors.get(), 10)
    print(f"after disconnect alice got error {e['error']['condition']}", flush=True)

    alice.disconnect()
    await asyncio.sleep(0.3)


if __name__ == "__main__":
    port, domain, name, secret = sys.argv[1:5]
    asyncio.run(main(int(port), domain, name, secret))

"""Real-client scenarios with slixmpp (from PyPI), driven by the Rust tests.

usage: slix.py SCENARIO PORT DOMAIN [args...]
Connects to 127.0.0.1:PORT only (no DNS); trusts the CA in $SSL_CERT_FILE.
Prints one line per observation; exits non-zero on failure.
"""
import asyncio
import os
import sys

import slixmpp


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port):
        super().__init__(jid, password)
        self.port = port
        self.use_aiodns = False
        self.ca_certs = os.environ["SSL_CERT_FILE"]
        self.online = asyncio.get_event_loop().create_future()
        self.inbox = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("failed_auth", lambda e: self._fail("authentication failed"))
        self.add_event_handler("disconnected", lambda e: self._fail("disconnected"))

    def _fail(self, why):
        if not self.online.done():
            self.online.set_exception(RuntimeError(why))

    async def _start(self, _):
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)

    async def go(self):
        self.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.online, 15)
        mech = self.plugin["feature_mechanisms"].mech
        print(f"online {self.boundjid} mechanism={mech.name if mech else 'legacy'}")


async def chat(port, domain):
    alice = Client(f"alice@{domain}/slix", "alice-pw", port)
    bob = Client(f"bob@{domain}/slix", "bob-pw", port)
    await alice.go()
    await bob.go()
    await asyncio.sleep(0.2)
    alice.send_message(mto=f"bob@{domain}", mbody="hello bob", mtype="chat")
    m = await asyncio.wait_for(bob.inbox.get(), 10)
    print(f"bob got {m['type']} from {m['from']}: {m['body']}")
    bob.send_message(mto=m["from"], mbody="hello alice", mtype="chat")
    m = await asyncio.wait_for(alice.inbox.get(), 10)
    print(f"alice got {m['type']} from {m['from']}: {m['body']}")
    for c in (alice, bob):
        c.disconnect()
    await asyncio.sleep(0.3)


async def main():
    scenario, port, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if scenario == "chat":
        await chat(port, domain)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


asyncio.run(main())

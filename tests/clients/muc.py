"""Chat-room scenarios with slixmpp's XEP-0045 plugin (from PyPI), driven by tests/muc.rs.

usage: muc.py SCENARIO PORT DOMAIN
Connects to 127.0.0.1:PORT only (no DNS); trusts the CA in $SSL_CERT_FILE.
Prints one line per observation; exits non-zero on failure.
"""
import asyncio
import os
import sys

import slixmpp
from slixmpp import JID


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port):
        super().__init__(jid, password)
        self.port = port
        self.use_aiodns = False
        self.ca_certs = os.environ["SSL_CERT_FILE"]
        for p in ("xep_0030", "xep_0004", "xep_0045", "xep_0203"):
            self.register_plugin(p)
        self.online = asyncio.get_event_loop().create_future()
        self.groupchat = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.put_nowait(m))
        self.add_event_handler("groupchat_presence", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("failed_auth", lambda e: self._fail("authentication failed"))

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

    @property
    def muc(self):
        return self.plugin["xep_0045"]

    async def message(self, text):
        """The next groupchat message with a body containing text (history skipped)."""
        while True:
            m = await asyncio.wait_for(self.groupchat.get(), 10)
            if text in m["body"]:
                return m

    async def presence(self, pred):
        while True:
            p = await asyncio.wait_for(self.presences.get(), 10)
            if pred(p):
                return p


def submit(client, fields):
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    for var, value in fields.items():
        form.add_field(var=var, value=value)
    return form


async def users(port, domain):
    return [Client(f"{u}@{domain}/slix", f"{u}-pw", port) for u in ("alice", "bob", "carol")]


async def chat(port, domain):
    """Three users join, chat, one changes nick, one is kicked."""
    room = JID(f"slixroom@conference.{domain}")
    alice, bob, carol = await users(port, domain)
    for c in (alice, bob, carol):
        await c.go()
    me, _, _, _ = await alice.muc.join_muc_wait(room, "alice", maxstanzas=0)
    print(f"alice joined: codes={sorted(me['muc']['status_codes'])} affiliation={me['muc']['affiliation']}")
    await alice.muc.set_room_config(room, submit(alice, {}))
    print("instant room configured")
    await bob.muc.join_muc_wait(room, "bob", maxstanzas=0)
    me, _, occupants, _ = await carol.muc.join_muc_wait(room, "carol", maxstanzas=0)
    print(f"carol sees occupants {sorted({p['from'].resource for p in occupants} | {me['from'].resource})}")
    alice.send_message(mto=room, mbody="welcome everyone", mtype="groupchat")
    for name, c in (("alice", alice), ("bob", bob), ("carol", carol)):
        m = await c.message("welcome everyone")
        print(f"{name} got groupchat from {m['from'].resource}: {m['body']}")
    bob.send_message(mto=room, mbody="thanks alice", mtype="groupchat")
    m = await alice.message("thanks alice")
    print(f"alice got groupchat from {m['from'].resource}: {m['body']}")
    new = await carol.muc.set_self_nick(room, "caroline")
    print(f"carol is now {new}")
    p = await alice.presence(lambda p: p["from"].resource == "caroline" and p["type"] != "unavailable")
    print(f"alice sees {p['from'].resource}")
    await alice.muc.set_role(room, "bob", "none", reason="enough")
    p = await bob.presence(lambda p: p["type"] == "unavailable" and 307 in p["muc"]["status_codes"])
    print(f"bob was kicked: codes={sorted(p['muc']['status_codes'])}")
    await asyncio.sleep(0.2)
    print(f"alice's roster {sorted(alice.muc.get_roster(room))}")
    for c in (alice, bob, carol):
        c.disconnect()
    await asyncio.sleep(0.3)


async def persist(port, domain):
    """Make a persistent room with a subject (the daemon is restarted after this)."""
    room = JID(f"keep@conference.{domain}")
    alice, _, _ = await users(port, domain)
    await alice.go()
    await alice.muc.join_muc_wait(room, "alice", maxstanzas=0)
    await alice.muc.set_room_config(room, submit(alice, {
        "muc#roomconfig_persistentroom": True,
        "muc#roomconfig_roomname": "Kept room",
    }))
    alice.muc.set_subject(room, "still here")
    await asyncio.sleep(0.5)
    print("persistent room made")
    alice.disconnect()
    await asyncio.sleep(0.3)


async def restored(port, domain):
    room = JID(f"keep@conference.{domain}")
    _, bob, _ = await users(port, domain)
    await bob.go()
    items = await bob.plugin["xep_0030"].get_items(jid=f"conference.{domain}")
    print(f"listed {[(str(i[0]), i[2]) for i in items['disco_items']['items']]}")
    me, subject, _, _ = await bob.muc.join_muc_wait(room, "bob", maxstanzas=0)
    print(f"bob joined: codes={sorted(me['muc']['status_codes'])} subject={subject['subject']}")
    bob.disconnect()
    await asyncio.sleep(0.3)


if __name__ == "__main__":
    scenario, port, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    asyncio.run({"chat": chat, "persist": persist, "restored": restored}[scenario](port, domain))

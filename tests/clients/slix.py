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
        self.register_plugin("xep_0203")  # delayed delivery stamps
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


async def wait_until(check, what, timeout=10):
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


async def friends(port, domain):
    """Roster add and accept with slixmpp's own subscription handling, presence seen
    both ways, then a message sent while the contact is offline arrives at login."""
    alice = Client(f"alice@{domain}/slix", "alice-pw", port)
    bob = Client(f"bob@{domain}/slix", "bob-pw", port)
    for c in (alice, bob):
        c.roster.auto_authorize = True
        c.roster.auto_subscribe = True
    await alice.go()
    await bob.go()
    await alice.get_roster()
    await bob.get_roster()
    alice.update_roster(f"bob@{domain}", name="Bob", groups=["Friends"])
    alice.send_presence_subscription(pto=f"bob@{domain}")
    a_roster = alice.client_roster
    b_roster = bob.client_roster
    await wait_until(lambda: a_roster[f"bob@{domain}"]["subscription"] == "both", "alice's subscription both")
    await wait_until(lambda: b_roster[f"alice@{domain}"]["subscription"] == "both", "bob's subscription both")
    print(f"alice sees bob as {a_roster[f'bob@{domain}']['subscription']} in {a_roster[f'bob@{domain}']['groups']}")
    print(f"bob sees alice as {b_roster[f'alice@{domain}']['subscription']}")
    await wait_until(lambda: "slix" in a_roster[f"bob@{domain}"].resources, "bob's presence at alice")
    await wait_until(lambda: "slix" in b_roster[f"alice@{domain}"].resources, "alice's presence at bob")
    print("presence seen both ways")
    bob.disconnect()
    await wait_until(lambda: "slix" not in a_roster[f"bob@{domain}"].resources, "bob's unavailable at alice")
    print("alice saw bob go offline")
    alice.send_message(mto=f"bob@{domain}", mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.5)
    bob2 = Client(f"bob@{domain}/again", "bob-pw", port)
    await bob2.go()
    m = await asyncio.wait_for(bob2.inbox.get(), 10)
    delayed = m["delay"]["stamp"] is not None
    print(f"bob got offline message from {m['from']}: {m['body']} delayed={delayed}")
    await wait_until(lambda: "again" in a_roster[f"bob@{domain}"].resources, "bob's return at alice")
    print("alice saw bob come back")
    for c in (alice, bob2):
        c.disconnect()
    await asyncio.sleep(0.3)


class Registrant(Client):
    """Signs up in-band (XEP-0077, slixmpp's xep_0077) when the server offers it,
    then logs in on the same stream."""

    def __init__(self, jid, password, port):
        super().__init__(jid, password, port)
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0077")
        self.add_event_handler("register", self._register)

    async def _register(self, form):
        fields = form["register"]["fields"]
        if {"username", "password"} <= fields:
            print("registration form has username and password")
        resp = self.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = self.boundjid.user
        resp["register"]["password"] = self.password
        await resp.send()
        print(f"registered {self.boundjid.user}")


async def refused(jid, password, port):
    """The server answered the login with a SASL failure (a timeout, a dropped
    connection or a session that came up is not a refusal)."""
    c = Client(jid, password, port)
    try:
        await c.go()
    except RuntimeError as e:
        return str(e) == "authentication failed"
    except asyncio.TimeoutError:
        return False
    finally:
        c.disconnect()
    return False


async def register(port, domain):
    """Sign up, change the password, cancel the registration, with slixmpp's own
    XEP-0077 plugin; each step checked by logging in."""
    kate = Registrant(f"kate@{domain}/slix", "kate-pw", port)
    await kate.go()
    await kate["xep_0077"].change_password("kate-new-pw")
    print("password changed")
    again = Client(f"kate@{domain}/again", "kate-new-pw", port)
    await again.go()
    print("online again with the new password")
    if await refused(f"kate@{domain}/old", "kate-pw", port):
        print("old password refused")
    ended = asyncio.get_event_loop().create_future()
    again.add_event_handler("disconnected", lambda e: ended.done() or ended.set_result(True))
    await kate["xep_0077"].cancel_registration()
    print("registration cancelled")
    # the server ends every session of the account
    await asyncio.wait_for(ended, 10)
    for c in (kate, again):
        c.disconnect()
    if await refused(f"kate@{domain}/gone", "kate-new-pw", port):
        print("removed account refused")


async def main():
    scenario, port, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if scenario == "chat":
        await chat(port, domain)
    elif scenario == "friends":
        await friends(port, domain)
    elif scenario == "register":
        await register(port, domain)
    else:
        raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    asyncio.run(main())

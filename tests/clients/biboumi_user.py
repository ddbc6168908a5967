"""An XMPP user (slixmpp) in an IRC channel through the biboumi gateway, driven by
tests/components.rs (which runs the IRC side with a raw socket).

usage: biboumi_user.py PORT DOMAIN ROOM IRC_NICK
ROOM is the channel's JID (#chan%irc-server@gateway). Joins it as "alice", waits for
IRC_NICK's presence in the room, says "hello from xmpp", waits for IRC_NICK's
"hello from irc". Connects to 127.0.0.1:PORT only; trusts the CA in $SSL_CERT_FILE.
Prints one line per observation; exits non-zero on failure.
"""
import asyncio
import os
import sys

import slixmpp


class User(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port):
        super().__init__(jid, password)
        self.port = port
        self.use_aiodns = False
        self.ca_certs = os.environ["SSL_CERT_FILE"]
        self.register_plugin("xep_0045")
        self.online = asyncio.get_event_loop().create_future()
        self.groupchat = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.put_nowait(m))
        self.add_event_handler("groupchat_presence", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("failed_auth", lambda e: self.online.set_exception(RuntimeError("auth")))

    async def _start(self, _):
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)


async def main(port, domain, room, irc_nick):
    me = User(f"alice@{domain}/irc", "alice-pw", port)
    me.connect("127.0.0.1", port)
    await asyncio.wait_for(me.online, 15)
    print("online", flush=True)

    me.plugin["xep_0045"].join_muc(room, "alice")
    seen_self = seen_irc = False
    while not (seen_self and seen_irc):
        p = await asyncio.wait_for(me.presences.get(), 30)
        nick = p["from"].resource
        if p["type"] == "error":
            raise RuntimeError(f"join failed: {p}")
        if nick == "alice" or "110" in [s for s in p["muc"]["status_codes"]]:
            if not seen_self:
                print(f"joined {p['from'].bare}", flush=True)
            seen_self = True
        elif nick == irc_nick and p["type"] != "unavailable":
            if not seen_irc:
                print(f"sees {irc_nick} in the room", flush=True)
            seen_irc = True

    me.send_message(mto=room, mbody="hello from xmpp", mtype="groupchat")
    while True:
        m = await asyncio.wait_for(me.groupchat.get(), 30)
        if m["from"].resource == irc_nick:
            print(f"got from {irc_nick}: {m['body']}", flush=True)
            break
    me.disconnect()
    await asyncio.sleep(0.3)


if __name__ == "__main__":
    port, domain, room, nick = sys.argv[1:5]
    asyncio.run(main(int(port), domain, room, nick))

"""XEP-0050 ad-hoc commands / XEP-0133 service administration with slixmpp's own
xep_0050 and xep_0004 plugins, driven by tests/adhoc.rs.

usage: adhoc.py PORT DOMAIN
alice is an administrator (the test's configuration), bob is not. Connects to
127.0.0.1:PORT only; trusts the CA in $SSL_CERT_FILE. Prints one line per
observation; exits non-zero on failure.
"""
import asyncio
import sys

from slixmpp.exceptions import IqError

from slix import Client, refused

ADMIN = "http://jabber.org/protocol/admin"


class Admin(Client):
    def __init__(self, jid, password, port):
        super().__init__(jid, password, port)
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0050")


async def command(c, domain, name, values):
    """Run admin command NAME: execute (the form), then complete with VALUES; the
    completed command element."""
    node = f"{ADMIN}#{name}"
    first = await c.plugin["xep_0050"].send_command(domain, node)
    cmd = first["command"]
    if cmd["status"] == "completed":
        return cmd
    assert cmd["status"] == "executing", cmd
    listed = cmd["form"]["fields"]
    fields = {f["var"]: f for f in (listed.values() if isinstance(listed, dict) else listed)}
    missing = set(values) - set(fields)
    assert not missing, f"{name}: the form lacks {missing}: {set(fields)}"
    form = c.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, value in values.items():
        form.add_field(var=var, ftype=fields[var]["type"], value=value)
    done = await c.plugin["xep_0050"].send_command(
        domain, node, action="complete", payload=form, sessionid=cmd["sessionid"]
    )
    assert done["command"]["status"] == "completed", done
    return done["command"]


def note(cmd):
    return cmd.xml.find("{http://jabber.org/protocol/commands}note").text


async def main():
    port, domain = int(sys.argv[1]), sys.argv[2]
    alice = Admin(f"alice@{domain}/admin", "alice-pw", port)
    bob = Admin(f"bob@{domain}/slix", "bob-pw", port)
    await alice.go()
    await bob.go()

    items = await alice.plugin["xep_0050"].get_commands(domain)
    nodes = sorted(i[1] for i in items["disco_items"]["items"])
    print("admin sees " + " ".join(n.split("#")[1] for n in nodes))
    items = await bob.plugin["xep_0050"].get_commands(domain)
    print(f"non-admin sees {len(items['disco_items']['items'])} commands")
    info = await alice.plugin["xep_0030"].get_info(domain)
    if "http://jabber.org/protocol/commands" in info["disco_info"]["features"]:
        print("server advertises commands")

    try:
        await command(bob, domain, "add-user", {})
        print("non-admin ran add-user")
    except IqError as e:
        print(f"non-admin refused: {e.iq['error']['condition']}")

    # add a user, who logs in
    done = await command(
        alice,
        domain,
        "add-user",
        {"accountjid": f"carol@{domain}", "password": "carol-pw", "password-verify": "carol-pw"},
    )
    print(f"add-user: {note(done)}")
    carol = Admin(f"carol@{domain}/slix", "carol-pw", port)
    await carol.go()
    try:
        await command(
            alice,
            domain,
            "add-user",
            {"accountjid": f"carol@{domain}", "password": "x", "password-verify": "x"},
        )
    except IqError as e:
        print(f"add-user again: {e.iq['error']['condition']}")

    # change her password: the new one works, the old one no longer does
    await command(
        alice, domain, "change-user-password", {"accountjid": f"carol@{domain}", "password": "carol-new"}
    )
    carol2 = Admin(f"carol@{domain}/second", "carol-new", port)
    await carol2.go()
    print("carol logged in with the new password")
    if await refused(f"carol@{domain}/old", "carol-pw", port):
        print("old password refused")

    # who is online
    done = await command(alice, domain, "get-online-users-list", {"max_items": "none"})
    users = done["form"].get_values()["onlineuserjids"]
    print("online: " + " ".join(sorted(str(u) for u in users)))
    done = await command(alice, domain, "get-online-users-num", {})
    print(f"online count: {done['form'].get_values()['onlineusersnum']}")

    # an announcement reaches every online session
    await command(alice, domain, "announce", {"subject": "Maintenance", "announcement": "back in 5"})
    for name, c in (("bob", bob), ("carol", carol)):
        m = await asyncio.wait_for(c.inbox.get(), 10)
        print(f"{name} got {m['type']} from {m['from']}: {m['subject']}: {m['body']}")

    # delete carol: her live sessions end, she can log in no more
    ended = asyncio.get_event_loop().create_future()
    carol2.add_event_handler("disconnected", lambda e: ended.done() or ended.set_result(True))
    done = await command(alice, domain, "delete-user", {"accountjids": [f"carol@{domain}"]})
    print(f"delete-user: {note(done)}")
    await asyncio.wait_for(ended, 10)
    print("carol's session was closed")
    if await refused(f"carol@{domain}/gone", "carol-new", port):
        print("deleted account refused")

    for c in (alice, bob, carol, carol2):
        c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())

//! The blocklist iq (XEP-0191): get, block, unblock. What a change does is decided in
//! [`xmppd_proto::im::account`]; the new list is stored before the answer and pushes.

use super::*;

impl Account {
    pub(super) fn blocking_iq(&mut self, resource: &str, iq: Element, ctx: &mut Context<Self>) {
        let Some(payload) = features::single_payload(&iq) else {
            return;
        };
        let req = match blocking::parse(payload, iq.attr("type").unwrap_or("")) {
            Ok(r) => r,
            Err(c) => {
                if let Some(e) = stanza::error_reply(&iq, c, None) {
                    self.write(resource, e);
                }
                return;
            }
        };
        let change = match req {
            BlockRequest::Get => {
                if let Some(r) = self.state.resource_mut(resource) {
                    r.block_interest = true;
                }
                let list = &self.state.blocklist;
                let reply = stanza::iq_result(&iq, Some(blocking::element("blocklist", list)));
                return self.write(resource, reply);
            }
            BlockRequest::Block(jids) => self.state.block(jids),
            BlockRequest::Unblock(jids) => self.state.unblock(jids),
        };
        self.carry_out(change.effects, None, ctx);
        let list = self.state.blocklist.clone();
        let res = resource.to_string();
        self.store(
            ctx,
            move |b, d, u| b.blocklist_set(d, u, &list),
            move |act, r, ctx| {
                let reply = match r {
                    Ok(()) => Some(stanza::iq_result(&iq, None)),
                    Err(e) => {
                        slog::error!(act.log, "blocklist not stored"; "error" => %e);
                        stanza::error_reply(&iq, ErrorCondition::InternalServerError, None)
                    }
                };
                if let Some(r) = reply {
                    act.write(&res, r);
                }
                if let Some(push) = change.push {
                    let fx = act.state.blocklist_pushes(&push);
                    act.carry_out(fx, None, ctx);
                }
            },
        );
    }
}

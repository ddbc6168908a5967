//! The blocklist (XEP-0191).

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
        let (changed, push) = match req {
            BlockRequest::Get => {
                if let Some(r) = self.state.resource_mut(resource) {
                    r.block_interest = true;
                }
                let list = &self.state.blocklist;
                let reply = stanza::iq_result(&iq, Some(blocking::element("blocklist", list)));
                return self.write(resource, reply);
            }
            BlockRequest::Block(jids) => {
                let new: Vec<String> = jids
                    .into_iter()
                    .filter(|j| !self.state.blocklist.contains(j))
                    .collect();
                let mut fx = Vec::new();
                for j in &new {
                    // the newly blocked stop seeing the user (XEP-0191 §3.3)
                    if let Ok(jid) = Jid::new(j) {
                        let bare = jid.to_bare().to_string();
                        if self.state.roster.get(&bare).is_some_and(|i| i.sub.from()) {
                            self.state.unavailable_to(j, &mut fx);
                        }
                    }
                    self.state.blocklist.push(j.clone());
                }
                self.carry_out(fx, None, ctx);
                (!new.is_empty(), blocking::element("block", &new))
            }
            BlockRequest::Unblock(jids) => {
                let list = &mut self.state.blocklist;
                let removed: Vec<String> = if jids.is_empty() {
                    std::mem::take(list)
                } else {
                    let r: Vec<String> =
                        jids.iter().filter(|j| list.contains(j)).cloned().collect();
                    list.retain(|b| !jids.contains(b));
                    r
                };
                // unblocking everything is pushed as an empty <unblock/>
                let push_items = if jids.is_empty() {
                    Vec::new()
                } else {
                    removed.clone()
                };
                (
                    !removed.is_empty() || jids.is_empty(),
                    blocking::element("unblock", &push_items),
                )
            }
        };
        let list = self.state.blocklist.clone();
        let res = resource.to_string();
        self.store(
            ctx,
            move |b, d, u| b.blocklist_set(d, u, &list),
            move |act, r, _| {
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
                if changed {
                    let shared = std::sync::Arc::new(act.state.blocklist.clone());
                    for (name, addr) in act.sessions.iter() {
                        addr.do_send(ToSession::Blocklist(shared.clone()));
                        if act.state.resource(name).is_some_and(|r| r.block_interest) {
                            let mut iq = Element::bare("iq", ns::CLIENT);
                            set_attr(&mut iq, "type", "set");
                            set_attr(&mut iq, "id", &format!("block{:x}", rand::random::<u32>()));
                            set_attr(&mut iq, "to", act.full(name).as_str());
                            iq.append_child(push.clone());
                            addr.do_send(ToSession::Write(iq));
                        }
                    }
                }
            },
        );
    }
}

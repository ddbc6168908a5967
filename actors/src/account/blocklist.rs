//! The blocklist (XEP-0191).

use super::*;

impl Account {
    pub(super) fn is_blocked(&self, jid: &Jid) -> bool {
        blocking::blocks(&self.blocklist, jid)
    }

    pub(super) fn is_blocked_str(&self, jid: &str) -> bool {
        Jid::new(jid).map(|j| self.is_blocked(&j)).unwrap_or(false)
    }

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
                if let Some(r) = self.resources.get_mut(resource) {
                    r.block_interest = true;
                }
                let reply =
                    stanza::iq_result(&iq, Some(blocking::element("blocklist", &self.blocklist)));
                return self.write(resource, reply);
            }
            BlockRequest::Block(jids) => {
                let new: Vec<String> = jids
                    .into_iter()
                    .filter(|j| !self.blocklist.contains(j))
                    .collect();
                for j in &new {
                    // the newly blocked stop seeing the user (XEP-0191 §3.3)
                    if let Ok(jid) = Jid::new(j) {
                        let bare = jid.to_bare().to_string();
                        if self.roster.get(&bare).is_some_and(|i| i.sub.from()) {
                            self.send_unavailable_to(j);
                        }
                    }
                    self.blocklist.push(j.clone());
                }
                (!new.is_empty(), blocking::element("block", &new))
            }
            BlockRequest::Unblock(jids) => {
                let removed: Vec<String> = if jids.is_empty() {
                    std::mem::take(&mut self.blocklist)
                } else {
                    let r: Vec<String> = jids
                        .iter()
                        .filter(|j| self.blocklist.contains(j))
                        .cloned()
                        .collect();
                    self.blocklist.retain(|b| !jids.contains(b));
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
        let list = self.blocklist.clone();
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
                    let shared = std::sync::Arc::new(act.blocklist.clone());
                    for (name, r) in act.resources.iter() {
                        r.addr.do_send(ToSession::Blocklist(shared.clone()));
                        if r.block_interest {
                            let mut iq = Element::bare("iq", ns::CLIENT);
                            set_attr(&mut iq, "type", "set");
                            set_attr(&mut iq, "id", &format!("block{:x}", rand::random::<u32>()));
                            set_attr(&mut iq, "to", act.full(name).as_str());
                            iq.append_child(push.clone());
                            r.addr.do_send(ToSession::Write(iq));
                        }
                    }
                }
            },
        );
    }
}

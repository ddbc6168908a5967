//! vCard (XEP-0054) and private XML storage (XEP-0049).

use super::*;

impl Account {
    pub(super) fn document_iq(
        &mut self,
        resource: Option<&str>,
        iq: Element,
        from_other: Option<Signal>,
        ctx: &mut Context<Self>,
    ) {
        let Some(payload) = features::single_payload(&iq).cloned() else {
            return;
        };
        let get = iq.attr("type") == Some("get");
        let (key, empty) = if payload.is("vCard", ns::VCARD) {
            ("vcard-temp".to_string(), Element::bare("vCard", ns::VCARD))
        } else {
            // XEP-0049: exactly one child, in a namespace of its own
            let mut kids = payload.children();
            let (Some(child), None) = (kids.next(), kids.next()) else {
                return self.answer(
                    resource,
                    &iq,
                    Err(ErrorCondition::NotAcceptable),
                    from_other,
                );
            };
            let cns = child.ns();
            if cns == ns::PRIVATE || cns == ns::CLIENT || cns == ns::SERVER {
                return self.answer(
                    resource,
                    &iq,
                    Err(ErrorCondition::NotAcceptable),
                    from_other,
                );
            }
            (format!("private:{}:{cns}", child.name()), child.clone())
        };
        let res = resource.map(str::to_string);
        let is_vcard = payload.is("vCard", ns::VCARD);
        if get {
            self.store(
                ctx,
                move |b, d, u| b.document_get(d, u, &key),
                move |act, r, _| {
                    let result = match r {
                        Ok(doc) => {
                            let el = doc.and_then(|x| x.parse::<Element>().ok()).unwrap_or(empty);
                            Ok(Some(if is_vcard {
                                el
                            } else {
                                let mut q = Element::bare("query", ns::PRIVATE);
                                q.append_child(el);
                                q
                            }))
                        }
                        Err(e) => {
                            slog::error!(act.log, "document not loaded"; "error" => %e);
                            Err(ErrorCondition::InternalServerError)
                        }
                    };
                    act.answer_payload(res.as_deref(), &iq, result, from_other);
                },
            );
        } else {
            let doc = if is_vcard {
                xmppd_proto::xml::writer::to_string(&payload)
            } else {
                xmppd_proto::xml::writer::to_string(&empty)
            };
            self.store(
                ctx,
                move |b, d, u| b.document_set(d, u, &key, &doc),
                move |act, r, _| {
                    let result = r.map(|_| ()).map_err(|e| {
                        slog::error!(act.log, "document not stored"; "error" => %e);
                        ErrorCondition::InternalServerError
                    });
                    act.answer(res.as_deref(), &iq, result, from_other);
                },
            );
        }
    }

    pub(super) fn answer(
        &mut self,
        resource: Option<&str>,
        iq: &Element,
        r: Result<(), ErrorCondition>,
        from_other: Option<Signal>,
    ) {
        self.answer_payload(resource, iq, r.map(|_| None), from_other)
    }

    /// Reply to an iq from one of the user's resources, or (routed) to another entity.
    pub(super) fn answer_payload(
        &mut self,
        resource: Option<&str>,
        iq: &Element,
        r: Result<Option<Element>, ErrorCondition>,
        from_other: Option<Signal>,
    ) {
        let reply = match r {
            Ok(p) => Some(stanza::iq_result(iq, p)),
            Err(c) => stanza::error_reply(iq, c, None),
        };
        let Some(reply) = reply else { return };
        match (resource, from_other) {
            (Some(res), _) => self.write(res, reply),
            (None, Some(_)) => self.route(reply),
            _ => {}
        }
    }
}

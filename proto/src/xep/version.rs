//! XEP-0092 software version.

use crate::ns;
use minidom::Element;

pub fn answer() -> Element {
    let mut q = Element::bare("query", ns::VERSION);
    let mut name = Element::bare("name", ns::VERSION);
    name.append_text("xmppd");
    let mut version = Element::bare("version", ns::VERSION);
    version.append_text(env!("CARGO_PKG_VERSION"));
    q.append_child(name);
    q.append_child(version);
    q
}

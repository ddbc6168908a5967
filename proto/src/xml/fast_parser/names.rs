//! Names and namespaces: the checks on a complete name and on its prefix (rxml's
//! `split_name`), the prefix declarations in scope, the resolution of an opening tag's
//! names at its end (rxml's resolver), and the recently built bare elements that new
//! ones are cloned from, with their interned namespaces.

use super::FastParser;
use super::errors::Xe;
use super::grammar::Start;
use minidom::Element;
use rxml::xml_map::Entry;
use rxml::{AttrMap, Namespace, NcName};

/// Check a complete name token (rxml: UTF-8 first, then the Name production).
#[inline]
pub(super) fn check_name(b: &[u8]) -> Result<(), Xe> {
    if b.is_ascii() {
        // every ASCII byte the lexer let into a name is a name character; only the
        // first one has a narrower class
        return match b.first() {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => Ok(()),
            _ => Err(Xe::NotWellFormed("invalid name")),
        };
    }
    let s = std::str::from_utf8(b).map_err(|_| Xe::Utf8)?;
    rxml::strings::validate_name(s).map_err(|_| Xe::NotWellFormed("invalid name"))
}

/// rxml's `split_name` on a valid Name: the colon's position, if any.
pub(super) fn split_name(name: &str) -> Result<Option<usize>, Xe> {
    let Some(colon) = name.find(':') else {
        return Ok(None);
    };
    if colon == 0 || colon == name.len() - 1 {
        return Err(Xe::NotWellFormed("empty name part"));
    }
    let local = &name[colon + 1..];
    if local.contains(':') {
        return Err(Xe::NotWellFormed("more than one colon in a name"));
    }
    let first_ok = match local.as_bytes()[0] {
        c if c.is_ascii() => c.is_ascii_alphabetic() || c == b'_',
        // the rest of the local part is made of name characters already
        _ => rxml::strings::validate_ncname(local).is_ok(),
    };
    if !first_ok {
        return Err(Xe::NotWellFormed("invalid local name"));
    }
    Ok(Some(colon))
}

/// The empty namespace, borrowed like rxml's `Namespace::NONE` but pointing into real
/// memory. `NONE`'s empty `&'static str` points at no memory; `AttrMap` compares
/// namespaces when it inserts, and glibc's AVX-512 `memcmp` reads from both pointers
/// under an empty mask, which costs a fault-suppression assist (~150 ns per compare on
/// the development machine's EPYC) when one of them is dangling.
pub(super) fn no_namespace() -> Namespace<'static> {
    static BACKING: &str = " ";
    Namespace::from_str(&BACKING[..0])
}

/// One element's namespace scope.
#[derive(Debug)]
pub(super) struct Frame {
    /// The default namespace this element declares.
    default: Option<Namespace<'static>>,
    /// Where this element's prefix declarations start in `FastParser::decls`.
    decls_start: usize,
}

/// How many elements `FastParser::templates` keeps.
const TEMPLATES: usize = 16;

impl FastParser {
    /// The namespace `prefix` is bound to in the open tag's scope (`xml` always is).
    fn lookup(&self, prefix: &str) -> Result<Namespace<'static>, Xe> {
        if prefix == "xml" {
            return Ok(Namespace::XML);
        }
        self.decls
            .iter()
            .rev()
            .find(|&&(s, e, _)| &self.decl_names[s..e] == prefix)
            .map(|(_, _, ns)| ns.clone())
            .ok_or(Xe::UndeclaredPrefix)
    }

    /// The opening tag is complete: resolve its namespaces (rxml: `finish_element`).
    pub(super) fn finish_element(&mut self) -> Result<(), Xe> {
        self.frames.push(Frame {
            default: self.head_default.take(),
            decls_start: self.head_decls_start,
        });
        let mut attrs = AttrMap::new();
        let mut pending = std::mem::take(&mut self.attrs);
        for a in pending.drain(..) {
            let (ns, local) = match a.colon {
                Some(c) => (
                    self.lookup(&self.attr_names[a.start..c])?,
                    &self.attr_names[c + 1..a.end],
                ),
                None => (self.none_ns.clone(), &self.attr_names[a.start..a.end]),
            };
            let name = NcName::try_from(local).map_err(|_| Xe::NotWellFormed("invalid name"))?;
            match attrs.entry(ns, name) {
                Entry::Occupied(_) => return Err(Xe::NotWellFormed("duplicate attribute")),
                Entry::Vacant(e) => {
                    e.insert(a.value);
                }
            }
        }
        self.attrs = pending;
        let start = self.open_starts.last().copied().unwrap_or(0);
        let mut el = match self.head_colon {
            Some(c) => {
                let ns = self.lookup(&self.open_names[start..start + c])?;
                self.bare_element(None, Some(ns), start + c + 1)
            }
            None => {
                let at = self.frames.iter().rposition(|f| f.default.is_some());
                self.bare_element(at, None, start)
            }
        };
        *el.attrs_mut() = attrs;
        self.start = Some(Start {
            el,
            len: self.cur_abs.wrapping_sub(self.lt_abs) as usize,
        });
        Ok(())
    }

    /// The namespace named `value`: rxml's static ones, else one a template already
    /// holds (a reference count, not an allocation, for the declarations a stream's
    /// stanzas repeat), else a new one.
    pub(super) fn intern(&self, value: &str) -> Namespace<'static> {
        if let Some(ns) = Namespace::try_share_static(value) {
            return ns;
        }
        match self.templates.iter().find(|(ns, _)| &**ns == value) {
            Some((ns, _)) => ns.clone(),
            None => Namespace::from(value.to_owned()),
        }
    }

    /// A bare element named `open_names[name_at..]`, from a template if one fits; in the
    /// namespace `ns`, or else the default one of `frames[frame]` (none without a frame).
    fn bare_element(
        &mut self,
        frame: Option<usize>,
        ns: Option<Namespace<'static>>,
        name_at: usize,
    ) -> Element {
        let ns = match (&ns, frame) {
            (Some(ns), _) => ns,
            (None, Some(i)) => self.frames[i].default.as_ref().unwrap_or(&self.none_ns),
            (None, None) => &self.none_ns,
        };
        let name = &self.open_names[name_at..];
        // lengths first: an empty string's bytes are not compared
        let same_ns = |t: &Namespace<'static>| t.len() == ns.len() && (ns.is_empty() || t == ns);
        if let Some((_, t)) = self
            .templates
            .iter()
            .find(|(tns, t)| t.name() == name && same_ns(tns))
        {
            return t.clone();
        }
        // (never a dangling pointer, even for the empty namespace: see `none_ns`)
        let mut ns_name = String::with_capacity(ns.len().max(1));
        ns_name.push_str(ns);
        let el = Element::bare(name, ns_name);
        let ns = ns.clone();
        if self.templates.len() < TEMPLATES {
            self.templates.push((ns, el.clone()));
        } else {
            self.templates[self.template_next] = (ns, el.clone());
            self.template_next = (self.template_next + 1) % TEMPLATES;
        }
        el
    }

    /// The element is closed (namespace scope).
    pub(super) fn pop_frame(&mut self) {
        if let Some(f) = self.frames.pop() {
            if let Some(&(s, _, _)) = self.decls.get(f.decls_start) {
                self.decl_names.truncate(s);
            }
            self.decls.truncate(f.decls_start);
        }
    }
}

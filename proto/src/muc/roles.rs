//! Roles and affiliations (XEP-0045 §5) and what each may do.

use serde::{Deserialize, Serialize};

/// A user's long-lived standing in a room (§5.2), ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }

    /// The role an occupant with this affiliation gets on entering (§5.1).
    pub fn default_role(self, moderated: bool) -> Role {
        match self {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// Whether an actor with this affiliation may change a user's affiliation from
    /// `from` to `to` (§9, §10: admins handle members and outcasts, owners everything).
    pub fn may_change(self, from: Affiliation, to: Affiliation) -> bool {
        match self {
            Affiliation::Owner => true,
            Affiliation::Admin => from < Affiliation::Admin && to < Affiliation::Admin,
            _ => false,
        }
    }
}

/// A presence-bound role in the room (§5.1), ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_roles() {
        assert_eq!(Affiliation::Owner.default_role(false), Role::Moderator);
        assert_eq!(Affiliation::Member.default_role(true), Role::Participant);
        assert_eq!(Affiliation::None.default_role(true), Role::Visitor);
        assert_eq!(Affiliation::None.default_role(false), Role::Participant);
    }

    #[test]
    fn admins_cannot_touch_admins_or_make_them() {
        use Affiliation::*;
        assert!(Admin.may_change(None, Member));
        assert!(Admin.may_change(Member, Outcast));
        assert!(!Admin.may_change(Admin, None));
        assert!(!Admin.may_change(None, Admin));
        assert!(Owner.may_change(Owner, Admin));
        assert!(!Member.may_change(None, Member));
    }

    #[test]
    fn names_round_trip() {
        for a in ["outcast", "none", "member", "admin", "owner"] {
            assert_eq!(Affiliation::parse(a).map(Affiliation::as_str), Some(a));
        }
        for r in ["none", "visitor", "participant", "moderator"] {
            assert_eq!(Role::parse(r).map(Role::as_str), Some(r));
        }
        assert_eq!(Role::parse("king"), None);
    }
}

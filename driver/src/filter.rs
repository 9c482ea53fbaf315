//! Which events a subscriber wants: [`EventFilter`].

use grapevine::state::RESERVED_PREFIX;

use crate::Event;

/// Which events a subscription receives ([`Handle::subscribe`](crate::Handle::subscribe)).
///
/// Every filter leaves out state changes of the reserved `gv.` keys (keys the
/// protocol keeps in a node's own state) unless it
/// asks for them with [`EventFilter::with_reserved_keys`], or its key prefix itself
/// starts with `gv.`: an application sees its own keys.
///
/// ```
/// use grapevine_driver::{Event, EventFilter, NodeId};
///
/// let node = NodeId::new("127.0.0.1:7946".parse().unwrap(), 1);
/// let changed = |key: &str| Event::StateChanged {
///     node: node.clone(),
///     key: key.into(),
///     value: Some(b"v".to_vec()),
/// };
/// let users = EventFilter::keys("user/");
/// assert!(users.matches(&changed("user/42")));
/// assert!(!users.matches(&changed("order/7")));
/// assert!(!users.matches(&Event::MemberJoined(node.clone())));
///
/// assert!(!EventFilter::all().matches(&changed("gv.tokens")));
/// assert!(EventFilter::all().with_reserved_keys().matches(&changed("gv.tokens")));
/// assert!(EventFilter::members().matches(&Event::MemberDied(node)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    kind: Kind,
    reserved: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    All,
    Keys(String),
    Members,
}

impl Default for EventFilter {
    /// [`EventFilter::all`].
    fn default() -> Self {
        EventFilter::all()
    }
}

impl EventFilter {
    /// Every event: membership, state changes of application keys, requests and
    /// responses, ring and placement news.
    pub fn all() -> Self {
        EventFilter {
            kind: Kind::All,
            reserved: false,
        }
    }

    /// Only [`Event::StateChanged`] for keys that start with `prefix` (chitchat's
    /// `subscribe_event(prefix)`), on any node; an empty prefix matches every
    /// application key.
    pub fn keys(prefix: impl Into<String>) -> Self {
        EventFilter {
            kind: Kind::Keys(prefix.into()),
            reserved: false,
        }
    }

    /// Only changes of members' liveness: [`Event::MemberJoined`] and
    /// [`Event::MemberRecovered`] (the member is live), [`Event::MemberSuspect`]
    /// (still live, but not answering), [`Event::MemberDied`] and
    /// [`Event::MemberLeft`] (no longer live).
    pub fn members() -> Self {
        EventFilter {
            kind: Kind::Members,
            reserved: false,
        }
    }

    /// Also passes state changes of the reserved `gv.` keys (the core's placement
    /// records), for tools that watch the ring itself.
    pub fn with_reserved_keys(mut self) -> Self {
        self.reserved = true;
        self
    }

    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &Event) -> bool {
        let key = match event {
            Event::StateChanged { key, .. } => Some(key.as_str()),
            _ => None,
        };
        match (&self.kind, key) {
            (Kind::All, None) => true,
            (Kind::All, Some(key)) => self.reserved || !is_reserved(key),
            (Kind::Keys(prefix), Some(key)) => {
                key.starts_with(prefix.as_str())
                    && (self.reserved || is_reserved(prefix) || !is_reserved(key))
            }
            (Kind::Keys(_), None) => false,
            (Kind::Members, _) => matches!(
                event,
                Event::MemberJoined(_)
                    | Event::MemberRecovered(_)
                    | Event::MemberSuspect(_)
                    | Event::MemberDied(_)
                    | Event::MemberLeft(_)
            ),
        }
    }
}

/// Whether `key` is one of the core's own (`gv.`) keys.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    fn id() -> NodeId {
        NodeId::new("127.0.0.1:1".parse().unwrap(), 1)
    }

    fn changed(key: &str) -> Event {
        Event::StateChanged {
            node: id(),
            key: key.into(),
            value: None,
        }
    }

    #[test]
    fn reserved_keys_are_hidden_unless_asked_for() {
        assert!(EventFilter::all().matches(&changed("app")));
        assert!(!EventFilter::all().matches(&changed("gv.ring")));
        assert!(EventFilter::all().matches(&Event::RingAgreed { digest: 1 }));
        assert!(!EventFilter::keys("").matches(&changed("gv.tokens")));
        assert!(EventFilter::keys("").matches(&changed("anything")));
        assert!(EventFilter::keys("gv.").matches(&changed("gv.tokens")));
        assert!(
            EventFilter::keys("")
                .with_reserved_keys()
                .matches(&changed("gv.tokens"))
        );
    }

    #[test]
    fn members_sees_only_liveness() {
        let members = EventFilter::members();
        assert!(members.matches(&Event::MemberJoined(id())));
        assert!(members.matches(&Event::MemberLeft(id())));
        assert!(!members.matches(&changed("app")));
        assert!(!members.matches(&Event::RingAgreed { digest: 1 }));
    }
}

//! A census of the traffic: every datagram the simulated nodes send, decoded and
//! counted by message kind. It answers "where did the bytes go" for a scenario
//! without a throwaway tap, at the cost of decoding each datagram once more (it is
//! off unless asked for: [`Sim::enable_census`](crate::Sim::enable_census)).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use grapevine::wire::{FLAG_SEALED, HEADER_LEN, decode_body, encode_message};

/// Messages and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many were sent.
    pub count: u64,
    /// Their encoded bytes (the message alone, without header or sender).
    pub bytes: u64,
}

/// Every datagram sent since the census began, by message kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// By [`grapevine::wire::Message::kind`].
    pub kinds: BTreeMap<&'static str, Tally>,
    /// Datagrams, and all their bytes (headers, senders and messages).
    pub datagrams: Tally,
    /// Datagrams that could not be decoded here: sealed with a keyring, or malformed.
    pub opaque: Tally,
}

impl Census {
    /// Counts one datagram.
    pub fn record(&mut self, payload: &[u8]) {
        self.datagrams.count += 1;
        self.datagrams.bytes += payload.len() as u64;
        let sealed = payload.get(3).is_some_and(|f| f & FLAG_SEALED != 0);
        let decoded = payload
            .get(HEADER_LEN..)
            .filter(|_| !sealed)
            .and_then(|body| decode_body::<SocketAddr>(body).ok());
        let Some((_, messages)) = decoded else {
            self.opaque.count += 1;
            self.opaque.bytes += payload.len() as u64;
            return;
        };
        for m in &messages {
            let t = self.kinds.entry(m.kind()).or_default();
            t.count += 1;
            t.bytes += encode_message(m).len() as u64;
        }
    }

    /// Bytes that are not messages: headers, senders and message counts.
    pub fn overhead(&self) -> u64 {
        let messages: u64 = self.kinds.values().map(|t| t.bytes).sum();
        self.datagrams
            .bytes
            .saturating_sub(messages + self.opaque.bytes)
    }
}

impl fmt::Display for Census {
    /// One line per kind, largest first, with its share of all bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.datagrams.bytes.max(1) as f64;
        let mut rows: Vec<(&str, Tally)> = self.kinds.iter().map(|(k, t)| (*k, *t)).collect();
        rows.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
        writeln!(
            f,
            "{:<14} {:>12} {:>14} {:>6}",
            "message", "sent", "bytes", "share"
        )?;
        let mut line = |name: &str, t: Tally| {
            writeln!(
                f,
                "{:<14} {:>12} {:>14} {:>5.1}%",
                name,
                t.count,
                t.bytes,
                100.0 * t.bytes as f64 / total
            )
        };
        for (k, t) in rows {
            line(k, t)?;
        }
        if self.opaque.count > 0 {
            line("(opaque)", self.opaque)?;
        }
        line(
            "(headers)",
            Tally {
                count: self.datagrams.count,
                bytes: self.overhead(),
            },
        )?;
        write!(
            f,
            "{:<14} {:>12} {:>14}",
            "datagrams", self.datagrams.count, self.datagrams.bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grapevine::NodeId;
    use grapevine::wire::{BodyBuilder, Header, Message};

    fn datagram(messages: &[Message<SocketAddr>]) -> Vec<u8> {
        let sender: NodeId<SocketAddr> = NodeId::new(crate::node_addr(0), 1);
        let mut body = BodyBuilder::new(&sender, 1200);
        for m in messages {
            assert!(body.push(m));
        }
        let mut out = Vec::new();
        Header {
            flags: 0,
            cluster_id: 7,
        }
        .write(&mut out);
        out.extend_from_slice(&body.finish());
        out
    }

    #[test]
    fn counts_each_message_by_kind_and_the_rest_as_headers() {
        let mut c = Census::default();
        let d = datagram(&[Message::Ping { seq: 3 }, Message::Ack { seq: 4 }]);
        c.record(&d);
        c.record(&datagram(&[Message::Ping { seq: 300 }]));
        c.record(b"GV\x01\x00garbage-not-a-body");
        assert_eq!(c.kinds["Ping"].count, 2);
        assert_eq!(c.kinds["Ack"].count, 1);
        assert_eq!(c.opaque.count, 1);
        assert_eq!(c.datagrams.count, 3);
        let messages: u64 = c.kinds.values().map(|t| t.bytes).sum();
        assert_eq!(
            messages + c.overhead() + c.opaque.bytes,
            c.datagrams.bytes,
            "every byte is counted once"
        );
        assert!(c.to_string().contains("Ping"));
    }
}

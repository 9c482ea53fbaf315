//! The wire format: a fixed header, then a postcard body holding the sender's
//! identity and a compound list of messages.
//!
//! ```text
//! +-------+---------+-------+------------+--------------------------------------------+
//! | "GV"  | version | flags | cluster id | body: sender NodeId, count, messages...     |
//! | 2 B   | 1 B     | 1 B   | 8 B LE     | (sealed: 24 B nonce, ciphertext, 16 B tag)  |
//! +-------+---------+-------+------------+--------------------------------------------+
//! ```
//!
//! Decoding is total: every input either decodes or yields a [`PacketError`], and a
//! decoder never allocates more than the input's length.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use crate::membership::MemberClaim;
use crate::membership::NodeId;
use crate::placement::{PlacementRecord, Rank, Topology};

/// The first two bytes of every Grapevine datagram.
pub const MAGIC: [u8; 2] = *b"GV";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 12;
/// Header flag: the body is sealed with the cluster keyring.
pub const FLAG_SEALED: u8 = 0b0000_0001;
/// Most messages in one compound packet; keeps the count a one-byte varint.
pub const MAX_MESSAGES: usize = 127;

/// One message of a compound packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Message<A> {
    /// SWIM direct probe.
    Ping {
        /// Matches the ack to the probe.
        seq: u32,
    },
    /// Answer to a [`Message::Ping`].
    Ack {
        /// The ping's sequence number.
        seq: u32,
    },
    /// Ask the receiver to probe `target` for us.
    PingReq {
        /// Our sequence number, echoed in the ack or nack we get back.
        seq: u32,
        /// The member to probe.
        target: NodeId<A>,
    },
    /// Lifeguard: the helper of a ping-req heard nothing from the target.
    Nack {
        /// The ping-req's sequence number.
        seq: u32,
    },
    /// A membership claim: rumour or anti-entropy answer.
    Member(MemberClaim<A>),
    /// A suspicion with the member that raised it, so that receivers can count
    /// independent accusers (Lifeguard's confirmations).
    Suspect {
        /// The suspected member.
        id: NodeId<A>,
        /// The incarnation it is suspected at.
        incarnation: u64,
        /// The member whose probe failed.
        accuser: A,
    },
    /// One key of one node's state: rumour (fast path).
    State(StateDelta<A>),
    /// Anti-entropy, step 1: the sender's summary root.
    SyncRoot {
        /// XOR of the sender's summary tree.
        root: u64,
    },
    /// Anti-entropy: the sender's hashes for the children of one tree node.
    SyncLevel {
        /// Depth of the parent (0 = root).
        depth: u8,
        /// Index of the parent at that depth.
        index: u16,
        /// The sender's hashes of the parent's children.
        hashes: Vec<u64>,
    },
    /// Anti-entropy, leaf: the members of one bucket as the sender sees them.
    SyncDigest {
        /// Bucket index.
        bucket: u16,
        /// Whether `entries` lists the whole bucket (not cut short by the datagram limit).
        complete: bool,
        /// The sender's view.
        entries: Vec<DigestEntry<A>>,
        /// The placement records in the bucket, by name and rank.
        placements: Vec<(String, Rank)>,
    },
    /// Anti-entropy: send me `owner`'s keys with versions above `after`.
    SyncRequest {
        /// Whose state.
        owner: NodeId<A>,
        /// The requester's watermark for `owner`.
        after: u64,
    },
    /// Anti-entropy: a page of `owner`'s keys, oldest version first.
    StatePage(StatePage<A>),
    /// A client request forwarded towards a replica.
    Request(ForwardedRequest<A>),
    /// The answer to a forwarded request, going back to its origin.
    Response(ForwardedResponse),
    /// One member's placement: rumour, or anti-entropy answer.
    Placement(PlacementRecord<A>),
    /// Anti-entropy: send me your placement record of `name` (yours ranks higher).
    PlacementWant {
        /// The member's name.
        name: String,
    },
    /// A value too large for one datagram, announced without its bytes (rumour, or in
    /// an anti-entropy answer). Whoever sends it holds the value: fetch it with
    /// [`Message::ValueWant`].
    StateStub(StateStub<A>),
    /// Send me these chunks of one large value (the sender must be a confirmed member).
    ValueWant(ValueWant<A>),
    /// One chunk of a large value, in answer to a [`Message::ValueWant`].
    ValueChunk(ValueChunk<A>),
    /// Ring agreement: which members of the ring hold `digest`, one bit each in the
    /// order of their names' stable hashes, segment `segment` of the set (1,024
    /// members per segment). Rumour, or the answer to a peer that is behind.
    Agreement {
        /// The ring digest the bits are about.
        digest: u64,
        /// Which 1,024 members the bits are about.
        segment: u16,
        /// One bit per member, least significant first.
        bits: Vec<u8>,
    },
    /// A placement record changed, announced without its body: who lacks that rank
    /// asks the sender for it with [`Message::PlacementWant`], unless the change is
    /// one of status only, which it can write itself (see `Placement::derive`).
    /// Rumour: only the record's writer spreads the record itself.
    PlacementNews {
        /// The member's name.
        name: String,
        /// The rank of the record the sender holds.
        rank: Rank,
        /// The status of that record.
        status: Topology,
    },
}

impl<A> Message<A> {
    /// The message's variant name (`"Ping"`, `"Member"`, ...): what a census of
    /// the traffic counts by.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "Ping",
            Message::Ack { .. } => "Ack",
            Message::PingReq { .. } => "PingReq",
            Message::Nack { .. } => "Nack",
            Message::Member(_) => "Member",
            Message::Suspect { .. } => "Suspect",
            Message::State(_) => "State",
            Message::SyncRoot { .. } => "SyncRoot",
            Message::SyncLevel { .. } => "SyncLevel",
            Message::SyncDigest { .. } => "SyncDigest",
            Message::SyncRequest { .. } => "SyncRequest",
            Message::StatePage(_) => "StatePage",
            Message::Request(_) => "Request",
            Message::Response(_) => "Response",
            Message::Placement(_) => "Placement",
            Message::PlacementWant { .. } => "PlacementWant",
            Message::StateStub(_) => "StateStub",
            Message::ValueWant(_) => "ValueWant",
            Message::ValueChunk(_) => "ValueChunk",
            Message::Agreement { .. } => "Agreement",
            Message::PlacementNews { .. } => "PlacementNews",
        }
    }
}

/// A large value of one node's state, described but not carried: its length and the
/// stable hash of its bytes, so that the reassembled value can be checked whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StateStub<A> {
    /// The node that owns the key.
    pub owner: NodeId<A>,
    /// The key.
    pub key: String,
    /// The owner's version counter at the write.
    pub version: u64,
    /// The value's length in bytes.
    pub len: u32,
    /// [`value_hash`] of the value's bytes.
    pub hash: u64,
}

/// A request for some chunks of one large value at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ValueWant<A> {
    /// The node that owns the key.
    pub owner: NodeId<A>,
    /// The key.
    pub key: String,
    /// The version wanted: chunks of any other version are not sent.
    pub version: u64,
    /// Chunk size in bytes, chosen by the requester to fit its datagrams.
    pub chunk: u16,
    /// The chunk indices wanted (at most [`MAX_CHUNKS_PER_WANT`] are answered).
    pub indices: Vec<u32>,
}

/// One chunk of a large value: bytes `index * chunk ..` of the value at `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ValueChunk<A> {
    /// The node that owns the key.
    pub owner: NodeId<A>,
    /// The key.
    pub key: String,
    /// The version the bytes belong to.
    pub version: u64,
    /// The chunk's index.
    pub index: u32,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Chunks one [`ValueWant`] may ask for: a window, so that one small request cannot
/// draw an unbounded burst.
pub const MAX_CHUNKS_PER_WANT: usize = 16;

/// The stable hash of a large value's bytes, carried in its [`StateStub`].
pub fn value_hash(bytes: &[u8]) -> u64 {
    use core::hash::Hasher;
    let mut h = crate::hash::StableHasher::default();
    h.write(bytes);
    h.write_u64(bytes.len() as u64);
    h.finish()
}

/// One key of one node's state, at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StateDelta<A> {
    /// The node that owns the key.
    pub owner: NodeId<A>,
    /// The key.
    pub key: String,
    /// The owner's version counter at the write.
    pub version: u64,
    /// The value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
}

/// What one node believes about one member, for anti-entropy comparison.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DigestEntry<A> {
    /// The member's claim as the sender holds it.
    pub claim: MemberClaim<A>,
    /// Content hash of the member's state as the sender holds it.
    pub state_hash: u64,
    /// Version through which the sender holds all of the member's state.
    pub watermark: u64,
}

/// A page of one node's state: every key the sender holds with a version in
/// `(after, upto]`, in ascending version order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct StatePage<A> {
    /// Whose state.
    pub owner: NodeId<A>,
    /// Lower bound (exclusive) of the page.
    pub after: u64,
    /// Upper bound (inclusive) through which the page is complete.
    pub upto: u64,
    /// The requester was away longer than the tombstone grace: keys in the range that
    /// are missing from the page are gone and must be dropped.
    pub reset: bool,
    /// The sender's collected-tombstone floor: keys at or below it may have been deleted
    /// and forgotten. The receiver adopts it, so that it too resets peers behind it.
    pub floor: u64,
    /// `(key, version, value)`, ascending by version.
    pub entries: Vec<(String, u64, Option<Vec<u8>>)>,
}

/// A client request on its way to a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ForwardedRequest<A> {
    /// The node that accepted the request from the client.
    pub origin: NodeId<A>,
    /// The origin's request id.
    pub id: u64,
    /// Forwarding hops left.
    pub hops: u8,
    /// The key.
    pub key: Vec<u8>,
    /// The application payload.
    pub payload: Vec<u8>,
}

/// The answer to a [`ForwardedRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ForwardedResponse {
    /// The origin's request id.
    pub id: u64,
    /// The application payload.
    pub payload: Vec<u8>,
}

/// Why a datagram was dropped. Whatever the variant, the node's state is unchanged
/// apart from the drop counter in [`Stats`](crate::Stats).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than the header, or the body ended early.
    Truncated,
    /// Longer than `max_datagram_size`.
    Oversized {
        /// The datagram's length.
        len: usize,
    },
    /// Not a Grapevine datagram.
    BadMagic,
    /// A protocol version this build does not speak.
    UnsupportedVersion(u8),
    /// The cluster id is not ours.
    ForeignCluster,
    /// Sealed with no key we hold, tampered with, or not sealed while we require it.
    Unauthenticated,
    /// The body does not decode.
    Malformed,
    /// The sender claims to be this node.
    FromSelf,
    /// Already seen inside the replay window.
    Replayed,
}

impl PacketError {
    /// The reason as a short, stable name, the same as the field of
    /// [`Drops`](crate::Drops) it is counted in (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::Truncated => "truncated",
            PacketError::Oversized { .. } => "oversized",
            PacketError::BadMagic => "bad_magic",
            PacketError::UnsupportedVersion(_) => "unsupported_version",
            PacketError::ForeignCluster => "foreign_cluster",
            PacketError::Unauthenticated => "unauthenticated",
            PacketError::Malformed => "malformed",
            PacketError::FromSelf => "from_self",
            PacketError::Replayed => "replayed",
        }
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Truncated => f.write_str("truncated datagram"),
            PacketError::Oversized { len } => {
                write!(f, "datagram of {len} bytes exceeds the limit")
            }
            PacketError::BadMagic => f.write_str("not a grapevine datagram"),
            PacketError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            PacketError::ForeignCluster => f.write_str("datagram from another cluster"),
            PacketError::Unauthenticated => f.write_str("datagram failed authentication"),
            PacketError::Malformed => f.write_str("malformed datagram body"),
            PacketError::FromSelf => f.write_str("datagram claims to come from this node"),
            PacketError::Replayed => f.write_str("replayed datagram"),
        }
    }
}

impl core::error::Error for PacketError {}

/// The fixed header of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header flags ([`FLAG_SEALED`]).
    pub flags: u8,
    /// Hash of the cluster name.
    pub cluster_id: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.flags);
        out.extend_from_slice(&self.cluster_id.to_le_bytes());
    }

    /// Reads and checks the header of `data`.
    pub fn read(data: &[u8], cluster_id: u64) -> Result<Header, PacketError> {
        let Some(head) = data.get(..HEADER_LEN) else {
            return Err(PacketError::Truncated);
        };
        if head[..2] != MAGIC {
            return Err(PacketError::BadMagic);
        }
        if head[2] != VERSION {
            return Err(PacketError::UnsupportedVersion(head[2]));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&head[4..12]);
        let header = Header {
            flags: head[3],
            cluster_id: u64::from_le_bytes(id),
        };
        if header.cluster_id != cluster_id {
            return Err(PacketError::ForeignCluster);
        }
        Ok(header)
    }
}

/// Decodes a plain (unsealed) body into the sender and its messages.
pub fn decode_body<A: DeserializeOwned>(
    body: &[u8],
) -> Result<(NodeId<A>, Vec<Message<A>>), PacketError> {
    let (sender, rest) = postcard::take_from_bytes::<NodeId<A>>(body).map_err(map_postcard)?;
    let (&count, mut rest) = rest.split_first().ok_or(PacketError::Truncated)?;
    if usize::from(count) > MAX_MESSAGES {
        return Err(PacketError::Malformed);
    }
    let mut messages = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (msg, tail) = postcard::take_from_bytes::<Message<A>>(rest).map_err(map_postcard)?;
        messages.push(msg);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(PacketError::Malformed);
    }
    Ok((sender, messages))
}

fn map_postcard(e: postcard::Error) -> PacketError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => PacketError::Truncated,
        _ => PacketError::Malformed,
    }
}

/// Encodes one message on its own, for size accounting and for the rumour queue.
pub fn encode_message<A: Serialize>(msg: &Message<A>) -> Vec<u8> {
    // Serialising into a Vec cannot fail for these types.
    postcard::to_allocvec(msg).unwrap_or_default()
}

/// Builds one compound datagram body under a byte budget.
///
/// The body is `sender ‖ count ‖ messages…`; messages are appended already encoded,
/// so the builder only copies bytes and never exceeds `budget`.
#[derive(Debug)]
pub struct BodyBuilder {
    buf: Vec<u8>,
    count_at: usize,
    count: u8,
    budget: usize,
}

impl BodyBuilder {
    /// Starts a body for `sender` that may grow to `budget` bytes.
    pub fn new<A: Serialize>(sender: &NodeId<A>, budget: usize) -> Self {
        let mut buf = Vec::with_capacity(budget.min(2048));
        // Cannot fail: NodeId serialises infallibly into a Vec.
        buf.extend_from_slice(&postcard::to_allocvec(sender).unwrap_or_default());
        let count_at = buf.len();
        buf.push(0);
        BodyBuilder {
            buf,
            count_at,
            count: 0,
            budget,
        }
    }

    /// Starts a body from the sender's identity already encoded (a node encodes its own
    /// once, rather than once per datagram).
    pub fn with_encoded_sender(sender: &[u8], budget: usize) -> Self {
        let mut buf = Vec::with_capacity(budget.min(2048));
        buf.extend_from_slice(sender);
        let count_at = buf.len();
        buf.push(0);
        BodyBuilder {
            buf,
            count_at,
            count: 0,
            budget,
        }
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.budget.saturating_sub(self.buf.len())
    }

    /// Messages in the body.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether no message was added yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends an encoded message if it fits; returns whether it did.
    pub fn push_encoded(&mut self, encoded: &[u8]) -> bool {
        if usize::from(self.count) >= MAX_MESSAGES || encoded.len() > self.remaining() {
            return false;
        }
        self.buf.extend_from_slice(encoded);
        self.count += 1;
        self.buf[self.count_at] = self.count;
        true
    }

    /// Encodes and appends a message if it fits.
    pub fn push<A: Serialize>(&mut self, msg: &Message<A>) -> bool {
        let encoded = encode_message(msg);
        self.push_encoded(&encoded)
    }

    /// The finished body.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

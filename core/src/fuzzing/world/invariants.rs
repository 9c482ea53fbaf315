//! The invariants the node harness checks after every step.

use super::*;

/// The per-node invariants (see the module docs).
pub(super) fn check(slot: &mut Slot, config: &Config) {
    let node = &slot.node;
    let me = node.id().clone();
    assert_eq!(me.generation, slot.generation);
    let inc = node.incarnation();
    assert!(
        inc >= slot.incarnation,
        "incarnation went down from {} to {inc}",
        slot.incarnation
    );
    slot.incarnation = inc;

    let mut members = node.members();
    let Some(first) = members.next() else {
        panic!("members() is empty: it must list the node itself first")
    };
    assert_eq!(first.id, me, "members() lists the node itself first");
    assert_eq!(first.incarnation, inc);
    // A decommissioning node stays alive until it has handed its ranges over.
    assert!(
        first.state == Status::Alive || (slot.ever_left && first.state == Status::Left),
        "the node believes itself {:?}",
        first.state
    );
    let mut count = 1;
    for m in members {
        count += 1;
        assert!(
            m.id.addr != me.addr,
            "the node holds itself as a member: {m:?}"
        );
        let bytes: usize = node
            .keys(&m.id.addr)
            .map(|(k, _, v)| k.len() + v.len())
            .sum();
        assert!(
            bytes <= config.max_state_bytes,
            "{bytes} bytes of state held for {:?}",
            m.id
        );
    }
    assert!(
        count <= config.max_members + 1,
        "{count} members held, max_members is {}",
        config.max_members
    );

    let own: BTreeMap<String, Vec<u8>> = node
        .keys(&me.addr)
        .filter(|(k, _, _)| !k.starts_with(crate::state::RESERVED_PREFIX))
        .map(|(k, _, v)| (String::from(k), v.to_vec()))
        .collect();
    assert_eq!(own, slot.model, "the node's own state is not what it wrote");
    for (k, v) in &slot.model {
        assert_eq!(node.get(&me.addr, k), Some(&v[..]));
    }
}

/// Placement records a node may hold: one per member it can hold, plus as many
/// tombstones (Left, Removed).
pub fn max_records(config: &Config) -> usize {
    2 * (config.max_members + 1)
}

/// The global memory bound: the member table, the unconfirmed share, the state held
/// (for at most a table's worth of owners, members or not, each within
/// `max_state_bytes`) and the placement records.
pub(super) fn check_bounds(node: &Node<FuzzAddr, FuzzRng>, config: &Config) {
    let share = (config.max_members * usize::from(config.unconfirmed_share.min(100)) / 100).max(1);
    let unconfirmed = node.unconfirmed_members();
    assert!(
        unconfirmed <= share,
        "{unconfirmed} unconfirmed members held, the share is {share}"
    );
    let (mut owners, mut bytes) = (0usize, 0usize);
    for a in node.state_owners() {
        owners += 1;
        bytes += node
            .keys(a)
            .map(|(k, _, v)| k.len() + v.len())
            .sum::<usize>();
    }
    assert!(
        owners <= config.max_members + 1,
        "state held for {owners} owners, max_members is {}",
        config.max_members
    );
    assert!(
        bytes <= (config.max_members + 1) * config.max_state_bytes,
        "{bytes} bytes of state held in all"
    );
    let records = node.topology().count();
    assert!(
        records <= max_records(config),
        "{records} placement records held (bound {})",
        max_records(config)
    );
}

/// Ring ownership: the tokens of a member this node has seen established (Normal, on
/// the ring) are held by no other on-ring name for as long as that member stays on
/// the ring with the same tokens (it leaves, or an operator removes it, first).
pub(super) fn check_ring(slot: &mut Slot) {
    let node = &slot.node;
    let records: BTreeMap<String, PlacementRecord<FuzzAddr>> =
        node.topology().map(|r| (r.name.clone(), r)).collect();
    // Forget members that left the ring or took other tokens (after a departure).
    slot.established.retain(|name, (epoch, tokens)| {
        records
            .get(name.as_str())
            .is_some_and(|r| r.status.is_on_ring() && r.epoch == *epoch && r.tokens == *tokens)
    });
    for r in records.values() {
        if r.status == Topology::Normal && !r.tokens.is_empty() {
            slot.established
                .entry(r.name.clone())
                .or_insert_with(|| (r.epoch, r.tokens.clone()));
        }
    }
    for (name, (_, tokens)) in &slot.established {
        for r in records.values() {
            if r.name == *name || !r.status.is_on_ring() {
                continue;
            }
            if let Some(t) = r.tokens.iter().find(|t| tokens.binary_search(t).is_ok()) {
                panic!(
                    "ring ownership: node {} holds {:?} on the ring with token {t} of the \
                     established member {name:?}",
                    node.id().addr,
                    r
                );
            }
        }
    }
}

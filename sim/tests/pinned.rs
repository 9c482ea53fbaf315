//! Pinned behaviour: the transmit digest of one fixed 50-node scenario on seeds 1, 2
//! and 3. Any change to what the core sends, or to the order in which it draws from its
//! RNG, changes these values. A refactoring must leave them alone; a change of
//! behaviour made on purpose updates them in the same commit and says why.
//!
//! The scenario: 50 nodes join through node 0 at 5% loss, every fifth node writes
//! three keys (and deletes one), node 7 crashes at 40 s, and from 60 s on requests for
//! 40 keys enter at rotating nodes and are answered wherever they are delivered; the
//! run ends at 120 simulated seconds.

use core::time::Duration;

use grapevine::{Event, Instant};
use grapevine_sim::{EventLog, NetConfig, SeedGuard, Sim, SimBuilder};

/// What one run of the scenario produced: the digest of every packet sent (time,
/// source, destination, bytes), the packets sent, and the events logged.
fn scenario(seed: u64) -> (u64, u64, usize) {
    let net = NetConfig::default().with_loss(0.05);
    let mut sim: Sim = SimBuilder::new(seed)
        .nodes(50)
        .net(net)
        .event_log(EventLog::All)
        .build();
    sim.join_all_via(0);
    sim.run_until(Instant::from_secs(20));
    for i in (0..50).step_by(5) {
        sim.with_node(i, |n, now| {
            for k in 0..3 {
                let key = format!("app.{i}.{k}");
                n.set(now, &key, format!("value {i}/{k}").as_bytes())
                    .expect("set");
            }
            n.delete(now, &format!("app.{i}.1")).expect("delete");
        });
    }
    sim.run_until(Instant::from_secs(40));
    sim.crash(7);
    sim.run_until(Instant::from_secs(60));
    let mut answered = sim.events().len();
    for r in 0..40usize {
        let origin = (r * 3) % 50;
        if origin == 7 {
            continue;
        }
        let key = format!("key-{r}");
        let _ = sim.with_node(origin, |n, now| {
            n.handle_request(now, key.as_bytes(), b"ping".to_vec())
        });
        let until = sim.now() + Duration::from_millis(250);
        sim.run_until(until);
        // Answer every request delivered so far, on the node it was delivered to.
        let delivered: Vec<(usize, grapevine::RequestId)> = sim.events()[answered..]
            .iter()
            .filter_map(|e| match &e.event {
                Event::Request { id, .. } => Some((e.node, *id)),
                _ => None,
            })
            .collect();
        answered = sim.events().len();
        for (node, id) in delivered {
            if sim.status(node).is_running() {
                let _ = sim.with_node(node, |n, now| n.respond(now, id, b"pong".to_vec()));
            }
        }
    }
    sim.run_until(Instant::from_secs(120));
    (
        sim.transmit_digest(),
        sim.net_totals().sent_packets,
        sim.events().len(),
    )
}

/// Pinned before the shape refactoring (commit 8ed6611: 0xa1c8_b885_f4b5_da31 /
/// 30,014 / 11,546, 0xe069_6105_17fa_9f8a / 30,460 / 11,546, 0xdd5e_830a_8c9d_aed2 /
/// 30,063 / 11,447) and unchanged by it (commit 8a13fd3). Changed on purpose by the
/// placement issue: placement follows topology (placement records by name, joint
/// token allocation, Joining → Normal after the ring delay, `gv.tokens` gone), and a
/// new life first heard of as suspect gets a suspicion timer; then `gv.ring` travels
/// by anti-entropy pull only (no rumour wave per topology change), and agreement is
/// re-checked when who is live changes (0x7e49_a910_c154_50f7 / 33,020 / 13,922, ...).
/// Changed again by the hardening issue: admission before trust (a newcomer is pinged
/// at once and confirmed by its ack; unconfirmed members are neither probed, picked,
/// summarised nor passed on unless they reached us themselves), replies to the
/// datagram's source (0x1a4a_b6c6_4834_8ff0 / 38,833 / 13,995, ...); then joiners
/// allocate in waves of at most 64 (the first Joining members by name, against the
/// ring) (0x16ae_b1bd_8378_0d96 / 38,300 / 14,001, 0xfc1b_5fa5_6d9b_1c01 / 40,338 /
/// 15,964, 0xa632_5b04_ef0d_9d98 / 37,935 / 14,020). Changed by the scale issue's
/// rumour priorities: a packet takes our own claims first, then topology (membership
/// and placement), then state (the join's state rumours now wait behind the rest)
/// (0xfaff_c01c_c4ed_02ba / 38,465 / 13,935, 0x2061_5a98_0359_81f3 / 39,792 / 15,917,
/// 0x392c_259a_efd6_6c7a / 39,874 / 15,976). Changed by the LAN preset's
/// `suspicion_mult` going from 4 to 3 (node 7's crash is declared sooner, so fewer
/// packets are sent to it) (0xb9cf_779a_5e12_7141 / 38,300 / 13,935,
/// 0xbdfc_4ca8_0b6e_d0a0 / 39,513 / 15,832, 0x481c_0b0a_ee39_62e7 / 39,602 / 15,972).
/// Changed by the buddy system at once (a suspect is told when our probe fails, not at
/// our next probe of it) and by refutations answered to the accuser: refutations
/// arrive sooner, so fewer suspicions are repeated (0x978c_8854_2153_2969 / 38,106 /
/// 13,935, 0x3905_5afa_16f7_781b / 39,663 / 15,790, 0xec4c_537e_4fe7_d572 / 39,530 /
/// 15,972). Changed by ring agreement as a merged bit set (`placement/agreement.rs`)
/// instead of every node's digest in its state (`gv.ring`): no state page per member
/// per topology change, and no `StateChanged` event for it on every node (fewer packets
/// and about 4,600 fewer events) (0x08d0_df6d_a14c_f36c / 36,372 / 9,195,
/// 0x6cf3_4709_af94_45e1 / 36,804 / 9,224, 0x6e5c_4056_9d54_c672 / 35,428 / 9,191).
/// Changed by placement records passed on as news (name and rank) and pulled once per
/// node with `PlacementWant`, instead of forwarded whole: more packets (the wants and
/// their answers), fewer bytes (one join at N = 128: 4.3 kB per node instead of 9.9)
/// (0x672d_56be_6be9_3355 / 41,041 / 9,190, 0x6f33_aba4_6740_a7a9 / 41,257 / 9,194,
/// 0x445f_b3da_a594_f5bb / 41,877 / 9,226). Changed by agreement repair: a node that
/// has not agreed sends one segment a round to a live member, and a peer that holds
/// bits the sender lacks answers even when it learned some too (rumours alone left a
/// node short for good on 3 seeds in 300 of the demo's 5-node cluster)
/// (0x86fb_bdb0_145a_2bb0 / 42,420 / 9,195, 0xcbdb_3acf_c84b_cb8e / 43,516 / 9,200,
/// 0x3788_0178_e77f_44ae / 41,447 / 9,192). Changed by the retelling of suspicions:
/// every node that holds one tells the suspect once more, half the minimum timeout
/// in (the fuzzer's two unhealthy nodes suspected each other and neither heard it)
/// (0x9601_111e_37ca_9686 / 42,004 / 9,192, 0x05e9_234f_0696_4c2d / 43,958 / 9,251,
/// 0xbc5b_ebf4_e971_1399 / 41,463 / 9,191; retelling every minimum timeout after that
/// left them alone). Changed by the death verdict sent to the member itself, so a live
/// one refutes at once (one datagram per holder per death)
/// (0xa488_9d0e_16d6_715f / 42,433 / 9,193, 0xfcea_1304_81a7_5fb6 / 43,726 / 9,205,
/// 0xb5a7_8b8d_0b76_7cf7 / 41,281 / 9,193). Changed by asking for a placement record
/// once per round and the next however many peers tell of it (a 256-node join: 217 k
/// records sent instead of 330 k, 13 % fewer bytes); the token-theft check's Bloom
/// filter before it changed nothing (0x6a26_83ae_6b42_8462 / 42,032 / 9,238,
/// 0xdec8_9d31_655b_bead / 41,503 / 9,223, 0x4911_ac45_0b93_dde9 / 40,498 / 9,195).
/// Changed by asking at most 12 records per datagram of news (what the answer's two
/// datagrams carry): the rest waited two rounds, and a 1,024-node join settled after
/// 149 s instead of 119 (0x8456_d486_8505_44e3 / 42,309 / 9,233,
/// 0x48e9_4725_437d_31fb / 40,507 / 9,226, 0x9aed_9ad7_1bed_1d04 / 40,481 / 9,191).
/// Changed by admission cookies: an admission ping's sequence number is a keyed hash
/// of the address (two more RNG draws when a node is built) instead of an entry in a
/// table of 1,024 pings in flight, which a joiner learning thousands of members at
/// once overflowed, so a 10,000-node join never converged (0x4c90_2a20_1e45_2ecc /
/// 42,753 / 9,193, 0x3472_f4dd_e6d1_cbbf / 42,505 / 9,195, 0x5fdf_2293_420f_0e6b /
/// 40,026 / 9,194). Changed by admission pings that carry no rumours (a forged claim
/// could point a datagram full of them at any address): the rumours go out on gossip
/// instead, and a 1,024-node join sees all in 3.6 s instead of 4.7
/// (0xf360_72de_5cda_e49d / 42,987 / 9,232, 0xc4d2_0758_48cd_6378 / 41,418 / 9,197,
/// 0xde37_7a0d_e1a8_3ef0 / 42,177 / 9,237). Changed by a newcomer's place in the probe
/// pass drawn by swapping (inside-out Fisher-Yates) instead of inserting, O(1) instead
/// of O(N): the same distribution, another order (0x9804_9244_e8ea_d308 / 42,762 /
/// 9,195, 0x4ea2_e69d_052d_3f82 / 41,674 / 9,225, 0x7ba9_b21f_1c23_7ffd / 42,719 /
/// 9,193). Changed on seed 2 only, by refutations passed on ahead of other topology
/// news and stale accusations answered with the refutation (at 30 % loss, N = 1,024:
/// 0 false deaths in 10 minutes instead of 11); seeds 1 and 3 send the same datagrams
/// (0xf30f_200b_fca4_5ebb / 41,466 / 9,200 on seed 2). Changed on seeds 2 and 3 by
/// joiners that no longer allocate against a ring that moved under their pending
/// wave-mates, and that start over once when a wave-mate's record reaches them after
/// they allocated (a 100-node mass join ended at max/mean up to 1.18 at RF 3 on 3 seeds
/// of 31; now at most 1.087 on 41) (0x7ba9_b21f_1c23_7ffd / 42,719 / 9,193 before on
/// seed 3; after: 0x331e_566e_26c3_ea41 / 42,603 / 9,201 on seed 2,
/// 0x4837_5934_f8cf_8bed / 45,125 / 9,240 on seed 3). Changed by placement news that
/// carries the record's status: a change of status only (Normal, Leaving, Left) is
/// written from the record held instead of pulled, so fewer wants and records
/// (0x9804_9244_e8ea_d308 / 42,762 / 9,195 before on seed 1). Changed by paced news:
/// an arrival or a record's version rests 62.5 ms between sends and retires once
/// three peers echoed it, so fewer rumours per datagram and fewer packets
/// (0xa972_6498_9394_203b / 39,405 / 9,196, 0x44e9_7723_33b1_832c / 40,866 / 9,248,
/// 0x2ffb_78ac_e057_5b50 / 41,121 / 9,215 before). Changed by the admission ping
/// riding in the reply to a newcomer that spoke for itself (a pair of members meets
/// in three datagrams instead of four: 24 % fewer datagrams in a 2,000-node join), and
/// by the reply to a source that was no member before the datagram being held to
/// three times its size (it had been admitted, so a member, by the time the limit was
/// asked: 56 times) (0x537a_2b8a_91e0_22d6 / 39,329 / 9,226,
/// 0xe367_c6e1_197e_ead0 / 38,195 / 9,199, 0xd181_756b_2541_fc31 / 37,842 / 9,200
/// before). Changed by ring-agreement segments retired once three peers sent back the
/// very bits we spread (`Budget::Quieted`): a join at N = 128 costs 4.3 kB per node
/// above idle instead of 4.9, and the agreement's bytes in a 1,024-node mass join
/// fall by about 45 % (0x7594_e614_5745_85b7 / 37,586 / 9,230,
/// 0x378e_40fe_7866_dc8c / 36,466 / 9,198, 0x48b3_7419_3a88_5308 / 37,575 / 9,223
/// before). Changed by a node joining an agreement about its own digest as soon as a
/// peer's segment about it arrives, instead of after its digest held still for two
/// rounds: `RingAgreed` everywhere 1.0–1.5 s sooner after a ring completes, fewer
/// packets, and more `RingAgreed` events (an agreement about an intermediate ring
/// now completes before the next change: 150 against 130 and 118 on seeds 1 and 3)
/// (0x7217_c8a5_8601_f4fd / 37,985 / 9,229, 0x935f_7cbe_5ef9_6f9e / 36,395 / 9,197,
/// 0x869a_42d0_99b0_a8ce / 37,719 / 9,223 before).
const PINNED: [(u64, (u64, u64, usize)); 3] = [
    (1, (0x7b39_fd1d_8f26_22a7, 36_687, 9_252)),
    (2, (0xdfc6_89b7_2141_73d2, 36_249, 9_197)),
    (3, (0x70ed_4c77_4873_a5b9, 36_238, 9_250)),
];

#[test]
fn transmit_digests_are_pinned() {
    let mut failures = Vec::new();
    for &(seed, expected) in &PINNED {
        let _guard = SeedGuard(seed);
        let got = scenario(seed);
        println!(
            "seed {seed}: digest {:#018x}, {} packets, {} events",
            got.0, got.1, got.2
        );
        if got != expected {
            failures.push(format!(
                "seed {seed}: got ({:#018x}, {}, {}), pinned ({:#018x}, {}, {})",
                got.0, got.1, got.2, expected.0, expected.1, expected.2
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

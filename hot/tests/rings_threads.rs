//! The engine's rings across real threads: nothing lost, nothing reordered, under load and
//! with the consumer deliberately slower than the producer (so the ring is full most of the time).

use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};
use maxx_hot::wiring::{Stamped, cap, wire};

fn tick(seq: u64) -> Tick {
    Tick {
        instrument: InstrumentId((seq % 3) as u16),
        venue: Venue::Binance,
        body: TickBody::Trade {
            price: Price::from_raw(1 + seq as i64).unwrap(),
            qty: Qty::from_raw(seq as i64).unwrap(),
            aggressor: if seq.is_multiple_of(2) { Side::Buy } else { Side::Sell },
        },
        seq,
        exchange_ns: seq,
        recv_ns: seq,
        stamp: Stamp(seq),
    }
}

#[test]
fn feed_to_alpha_ring_keeps_every_tick_in_order_across_threads() {
    const N: u64 = 2_000_000;
    let mut wiring = wire(&[Venue::Binance]);
    let mut producer = wiring.feeds.remove(0).to_alpha;
    let mut consumer = wiring.alpha.ticks.remove(0);
    let writer = std::thread::spawn(move || {
        let mut full_seen = 0u64;
        for seq in 0..N {
            let mut t = Stamped::new(tick(seq), seq);
            loop {
                match producer.push(t) {
                    Ok(()) => break,
                    Err(rtrb::PushError::Full(back)) => {
                        full_seen += 1;
                        t = back;
                        std::hint::spin_loop();
                    }
                }
            }
        }
        full_seen
    });
    let mut expected = 0u64;
    while expected < N {
        match consumer.pop() {
            Ok(t) => {
                assert_eq!(
                    t,
                    Stamped::new(tick(expected), expected),
                    "tick {expected} lost or reordered"
                );
                expected += 1;
                // Slow down now and then so the producer meets a full ring.
                if expected.is_multiple_of(65_536) {
                    while consumer.slots() < cap::MD_ALPHA && !writer.is_finished() {
                        std::hint::spin_loop();
                    }
                }
            }
            Err(_) => std::hint::spin_loop(),
        }
    }
    let full_seen = writer.join().unwrap();
    assert!(consumer.pop().is_err(), "more ticks than were pushed");
    assert!(full_seen > 0, "the test never exercised a full ring");
}

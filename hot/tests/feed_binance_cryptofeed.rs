//! The real cryptofeed Binance recordings (`../shared/data/cryptofeed/BINANCE-b38f7c.0` and
//! `BINANCE.ws.1.0`, Binance Spot, 2021) decode with zero errors: bookTicker frames become
//! quotes, aggTrade, depth and kline frames are recognised and skipped.
//!
//! Their line format is cryptofeed's (`<unix_ts>: <frame>` for received frames, other lines for
//! configuration, REST responses and outgoing requests), not the capture format, so this test
//! extracts the frames itself. It skips with a note when `../shared` is absent.

use std::collections::BTreeSet;

use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::{Decoded, FrameMeta, SkipKind, TickBatch};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::records::TickBody;
use maxx_hot::source::Decode;

/// Received frames: lines `<digits>.<digits>: <json>`.
fn frames(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| {
            let (ts, rest) = l.split_once(": ")?;
            (!ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.')).then_some(rest)
        })
        .collect()
}

/// Every `"s":"SYMBOL"` in the frames, as a Binance instrument index.
fn index_for(frames: &[&str]) -> InstrumentIndex {
    let mut symbols = BTreeSet::new();
    for f in frames {
        let mut rest = *f;
        while let Some(i) = rest.find("\"s\":\"") {
            rest = &rest[i + 5..];
            if let Some(end) = rest.find('"') {
                symbols.insert(rest[..end].to_string());
            }
        }
    }
    InstrumentIndex::new(symbols.iter().map(|s| {
        let mut vs = [None; Venue::COUNT];
        vs[Venue::Binance.index()] = Some(VenueSymbol::new(s).unwrap());
        (Symbol::new(s).unwrap(), vs)
    }))
    .unwrap()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    quotes: u64,
    trades: u64,
    depth: u64,
    agg_trade: u64,
    other: u64,
    control: u64,
}

fn decode_all(name: &str) -> Option<Counts> {
    let path = format!(
        "{}/../shared/data/cryptofeed/{name}",
        env!("CARGO_MANIFEST_DIR").trim_end_matches("/hot")
    );
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("note: {path} is not present; skipping this real-capture check");
        return None;
    };
    let frames = frames(&text);
    let index = index_for(&frames);
    let mut decoder = BinanceDecoder::new();
    let mut batch = TickBatch::new();
    let mut counts = Counts::default();
    for (i, frame) in frames.iter().enumerate() {
        batch.clear();
        match Decode::decode(&mut decoder, frame.as_bytes(), FrameMeta::default(), &index, &mut batch) {
            Ok(Decoded::Tick(t)) => match t.body {
                TickBody::Quote { bid, ask, .. } => {
                    assert!(!bid.is_zero() && !ask.is_zero());
                    counts.quotes += 1;
                }
                TickBody::Trade { .. } => counts.trades += 1,
            },
            Ok(Decoded::Skipped(SkipKind::Depth)) => counts.depth += 1,
            Ok(Decoded::Skipped(SkipKind::AggTrade)) => counts.agg_trade += 1,
            Ok(Decoded::Skipped(_)) => counts.other += 1,
            Ok(Decoded::Control(_)) => counts.control += 1,
            Ok(Decoded::Ticks) => panic!("binance frames carry one tick"),
            Err(e) => panic!("{name} frame {i} failed to decode ({e}): {frame}"),
        }
    }
    Some(counts)
}

#[test]
fn cryptofeed_binance_spot_recording_decodes_without_errors() {
    let Some(c) = decode_all("BINANCE-b38f7c.0") else {
        return;
    };
    // The data README's counts: 1,240 aggTrade, 5,408 bookTicker, 4,709 depth@100ms.
    assert_eq!(
        c,
        Counts {
            quotes: 5_408,
            trades: 0,
            depth: 4_709,
            agg_trade: 1_240,
            other: 0,
            control: 0
        }
    );
}

#[test]
fn cryptofeed_binance_ws_recording_decodes_without_errors() {
    let Some(c) = decode_all("BINANCE.ws.1.0") else { return };
    // 177 depth@100ms, 84 bookTicker, 2 aggTrade, 2 kline_1m.
    assert_eq!(
        c,
        Counts {
            quotes: 84,
            trades: 0,
            depth: 177,
            agg_trade: 2,
            other: 2,
            control: 0
        }
    );
}

#[test]
fn aggregate_trades_decode_as_trades_when_subscribed() {
    let docs = br#"{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100","f":100,"l":105,"T":1672515782136,"m":true,"M":true}"#;
    let index = index_for(&["\"s\":\"BNBBTC\""]);
    let mut batch = TickBatch::new();
    let mut plain = BinanceDecoder::new();
    assert_eq!(
        Decode::decode(&mut plain, docs, FrameMeta::default(), &index, &mut batch),
        Ok(Decoded::Skipped(SkipKind::AggTrade))
    );
    let mut agg = BinanceDecoder::new().with_agg_trades();
    let Ok(Decoded::Tick(t)) = Decode::decode(&mut agg, docs, FrameMeta::default(), &index, &mut batch) else {
        panic!("an aggTrade is a trade when subscribed");
    };
    assert_eq!(t.seq, 12345, "the aggregate trade id");
    assert_eq!(t.exchange_ns, 1_672_515_782_136_000_000);
    let TickBody::Trade { price, qty, aggressor } = t.body else {
        panic!()
    };
    assert_eq!(
        (price.to_string(), qty.to_string(), aggressor),
        ("0.001".into(), "100".into(), maxx_hot::records::Side::Sell)
    );
    // Every aggregate trade of the real recording decodes.
    let path = format!(
        "{}/../shared/data/cryptofeed/BINANCE-b38f7c.0",
        env!("CARGO_MANIFEST_DIR").trim_end_matches("/hot")
    );
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let frames = frames(&text);
    let index = index_for(&frames);
    let mut trades = 0;
    for f in frames.iter().filter(|f| f.contains("@aggTrade")) {
        batch.clear();
        match Decode::decode(&mut agg, f.as_bytes(), FrameMeta::default(), &index, &mut batch) {
            Ok(Decoded::Tick(_)) => trades += 1,
            other => panic!("{other:?} for {f}"),
        }
    }
    assert_eq!(trades, 1_240);
}

//! The engine's records as Redis stream entries: stream names, field schemas, ids and keys.
//!
//! [`EntryBuilder`] turns what the taps carry ([`Record`]) and the Portfolio's
//! [`PnlSnapshot`]s into [`Entry`]s for the streams `ticks:<symbol>` (trades only),
//! `signals:<symbol>`, `orders`, `fills` and `pnl`. All values are strings: decimals exactly as
//! `maxx_hot::num` prints them (signal scores as the fixed-point `Factor` prints itself), times
//! integer nanoseconds since the epoch, so the same records always give the same bytes.
//!
//! Entry ids are explicit (`<ms>-<n>`) and come from the event's own time, not the wall
//! clock: [`StreamIds`] keeps, per stream, the last id given and hands out the event's
//! millisecond with `n = 0`, or, when the event is not later than the stream's last
//! millisecond (two events in one millisecond, or a venue's clock behind another's), the last
//! millisecond with `n + 1`. Ids are thus strictly increasing per stream, as Redis requires,
//! and the same records in the same order give the same ids in any process.
//!
//! The `key` field is the deterministic UUIDv7 of [`super::key::event_key`] over the entry's
//! id and its source (`<instance>/<stream>`): the id's millisecond is its timestamp and the
//! id's `n` its sequence, so distinct entries of one instance never share a key and the same
//! entry always has the same one. For an event older than its stream's last millisecond the
//! key's time is that millisecond (the id's), not the event's.

use std::collections::BTreeMap;
use std::fmt;

use maxx_hot::ids::{InstrumentId, InstrumentIndex};
use maxx_hot::num::Money;
use maxx_hot::records::{ExecReport, Liquidity, OrderKind, TickBody};
use thiserror::Error;

use super::Entry;
use super::key::{KeyError, event_key};
use crate::emit::origin_name;
use crate::taps::Record;

/// Nanoseconds per millisecond.
const NS_PER_MS: u64 = 1_000_000;

/// The Portfolio's account value at one moment (the `pnl` stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PnlSnapshot {
    /// When (ns since the epoch).
    pub ts_ns: u64,
    /// Equity: balance plus unrealized PnL.
    pub equity: Money,
    /// Realized PnL, net of fees.
    pub realized: Money,
    /// Unrealized PnL at the last marks.
    pub unrealized: Money,
}

/// Which family of stream an entry belongs to; decides what happens to it under pressure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `ticks:<symbol>`: market data, may be shed.
    Ticks,
    /// `signals:<symbol>`: derived from market data, may be shed.
    Signals,
    /// `orders`: never dropped.
    Orders,
    /// `fills`: never dropped.
    Fills,
    /// `pnl`: never dropped.
    Pnl,
    /// Any other stream (e.g. `governor`): never dropped.
    Other,
}

impl StreamKind {
    /// Every kind, in index order.
    pub const ALL: [StreamKind; 6] = [
        StreamKind::Ticks,
        StreamKind::Signals,
        StreamKind::Orders,
        StreamKind::Fills,
        StreamKind::Pnl,
        StreamKind::Other,
    ];
    /// Number of kinds; sizes per-kind counters.
    pub const COUNT: usize = StreamKind::ALL.len();

    /// The kind of the stream called `stream`.
    pub fn of(stream: &str) -> StreamKind {
        match stream {
            "orders" => StreamKind::Orders,
            "fills" => StreamKind::Fills,
            "pnl" => StreamKind::Pnl,
            s if s.starts_with("ticks:") => StreamKind::Ticks,
            s if s.starts_with("signals:") => StreamKind::Signals,
            _ => StreamKind::Other,
        }
    }

    /// Position in [`ALL`](Self::ALL), for counters.
    pub const fn index(self) -> usize {
        match self {
            StreamKind::Ticks => 0,
            StreamKind::Signals => 1,
            StreamKind::Orders => 2,
            StreamKind::Fills => 3,
            StreamKind::Pnl => 4,
            StreamKind::Other => 5,
        }
    }

    /// `ticks`, `signals`, `orders`, `fills`, `pnl` or `other`.
    pub const fn name(self) -> &'static str {
        match self {
            StreamKind::Ticks => "ticks",
            StreamKind::Signals => "signals",
            StreamKind::Orders => "orders",
            StreamKind::Fills => "fills",
            StreamKind::Pnl => "pnl",
            StreamKind::Other => "other",
        }
    }

    /// `true` for market data and what is derived from it: a consumer can rebuild it from the
    /// capture, so under pressure it may be dropped (and counted) instead of held.
    pub const fn sheddable(self) -> bool {
        matches!(self, StreamKind::Ticks | StreamKind::Signals)
    }
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them. The writer sets them
/// explicitly ([`StreamIds`]); readers ([`super::consume`]) and the journal parse them back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds since the epoch.
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for EntryId {
    type Err = EntryError;

    /// Parses the canonical form Redis writes: two decimal numbers without signs or leading
    /// zeros, joined by `-`.
    fn from_str(s: &str) -> Result<Self, EntryError> {
        let bad = || EntryError::BadId(s.to_string());
        let number = |t: &str| {
            let canonical = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'));
            if canonical { t.parse().ok() } else { None }
        };
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(EntryId {
            ms: number(ms).ok_or_else(bad)?,
            seq: number(seq).ok_or_else(bad)?,
        })
    }
}

/// Strictly increasing ids per stream, from the events' own times.
#[derive(Clone, Debug, Default)]
pub struct StreamIds {
    last: BTreeMap<String, EntryId>,
}

impl StreamIds {
    /// No stream has an id yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues `stream` after `last` (e.g. the stream's top entry read at start, or the last
    /// id a journal holds), so that new ids stay above it.
    pub fn resume(&mut self, stream: &str, last: EntryId) {
        self.last.insert(stream.to_string(), last);
    }

    /// The last id given for `stream`, if any.
    pub fn last(&self, stream: &str) -> Option<EntryId> {
        self.last.get(stream).copied()
    }

    /// The id of the next entry of `stream`, for an event at `ts_ns`.
    pub fn next(&mut self, stream: &str, ts_ns: u64) -> EntryId {
        let ms = ts_ns / NS_PER_MS;
        let id = match self.last.get(stream) {
            Some(last) if ms <= last.ms => match last.seq.checked_add(1) {
                Some(seq) => EntryId { ms: last.ms, seq },
                // The millisecond is used up (only after a resume at `n = u64::MAX`): the
                // next id Redis accepts is the next millisecond's first.
                None => EntryId {
                    ms: last.ms + 1,
                    seq: 0,
                },
            },
            // Redis refuses the id 0-0, so an event at the epoch starts at 0-1.
            _ => EntryId {
                ms,
                seq: u64::from(ms == 0),
            },
        };
        match self.last.get_mut(stream) {
            Some(last) => *last = id,
            None => {
                self.last.insert(stream.to_string(), id);
            }
        }
        id
    }
}

/// Why a record could not become an entry.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EntryError {
    /// The record names an instrument the index does not have.
    #[error("instrument id {0} is not in the instrument index ({1} instruments)")]
    UnknownInstrument(u16, usize),
    /// The instance name is unusable as part of a source identity.
    #[error("bus instance name {0:?} must be 1 to 64 characters of [A-Za-z0-9_.-]")]
    BadInstance(String),
    /// The event's time cannot be a key's timestamp.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A text that is not a stream id.
    #[error("invalid stream entry id {0:?}: expected <ms>-<seq>")]
    BadId(String),
}

/// Builds entries for one engine instance.
#[derive(Clone, Debug)]
pub struct EntryBuilder {
    instance: String,
    /// Per instrument: its symbol, `ticks:<symbol>`, `signals:<symbol>`.
    names: Vec<(String, String, String)>,
    ids: StreamIds,
}

impl EntryBuilder {
    /// A builder for the instruments of `index`, for the engine instance called `instance`
    /// (part of every key's source identity: two engines writing one Redis must differ).
    pub fn new(instance: &str, index: &InstrumentIndex) -> Result<Self, EntryError> {
        let ok = !instance.is_empty()
            && instance.len() <= 64
            && instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(EntryError::BadInstance(instance.to_string()));
        }
        let names = index
            .iter()
            .map(|i| {
                let s = i.symbol.as_str();
                (s.to_string(), format!("ticks:{s}"), format!("signals:{s}"))
            })
            .collect();
        Ok(Self {
            instance: instance.to_string(),
            names,
            ids: StreamIds::new(),
        })
    }

    /// The id state, e.g. to [`StreamIds::resume`] streams at start.
    pub fn ids_mut(&mut self) -> &mut StreamIds {
        &mut self.ids
    }

    /// The entry for a record, or `None` for records no stream carries (quotes, acks, routes,
    /// rejects, cancels, refusals, risk transitions, execution notes, bad frames).
    pub fn record(&mut self, record: &Record) -> Result<Option<Entry>, EntryError> {
        match record {
            Record::Tick(t) => {
                let TickBody::Trade { price, qty, aggressor } = t.body else {
                    return Ok(None);
                };
                let (_, stream, _) = self.names(t.instrument)?;
                let stream = stream.clone();
                let ts = if t.exchange_ns != 0 { t.exchange_ns } else { t.recv_ns };
                self.entry(
                    stream,
                    ts,
                    [
                        ("price", price.to_string()),
                        ("volume", qty.to_string()),
                        ("venue", t.venue.name().to_string()),
                        ("recv_ts", t.recv_ns.to_string()),
                        ("side", aggressor.name().to_string()),
                        ("seq", t.seq.to_string()),
                    ],
                )
                .map(Some)
            }
            Record::Signal(s) => {
                let (_, _, stream) = self.names(s.instrument)?;
                let stream = stream.clone();
                self.entry(
                    stream,
                    s.ts_ns,
                    [
                        ("score", s.score.to_string()),
                        ("side", s.side.name().to_string()),
                        ("confidence", s.confidence.to_string()),
                    ],
                )
                .map(Some)
            }
            Record::Order(o) => {
                let symbol = self.names(o.instrument)?.0.clone();
                let (kind, price) = match o.kind {
                    OrderKind::Market => ("market", String::new()),
                    OrderKind::Limit(p) => ("limit", p.to_string()),
                };
                self.entry(
                    "orders".to_string(),
                    o.ts_ns,
                    [
                        ("id", o.id.0.to_string()),
                        ("symbol", symbol),
                        ("qty", o.qty.to_string()),
                        ("side", o.side.name().to_string()),
                        ("venue", o.venue.name().to_string()),
                        ("type", kind.to_string()),
                        ("price", price),
                        ("tif", o.tif.name().to_string()),
                        ("origin", origin_name(o.origin).to_string()),
                    ],
                )
                .map(Some)
            }
            Record::Report(ExecReport::Fill(f)) => {
                let symbol = self.names(f.instrument)?.0.clone();
                let liquidity = match f.liquidity {
                    Liquidity::Taker => "taker",
                    Liquidity::Maker => "maker",
                };
                self.entry(
                    "fills".to_string(),
                    f.ts_ns,
                    [
                        ("order_id", f.order_id.0.to_string()),
                        ("price", f.price.to_string()),
                        ("fee", f.fee.to_string()),
                        ("qty", f.qty.to_string()),
                        ("side", f.side.name().to_string()),
                        ("symbol", symbol),
                        ("venue", f.venue.name().to_string()),
                        ("liquidity", liquidity.to_string()),
                    ],
                )
                .map(Some)
            }
            Record::Report(_) | Record::Refusal(_) | Record::Bad(_) | Record::Transition(_) | Record::Note(_) => {
                Ok(None)
            }
        }
    }

    /// The `pnl` entry for a snapshot.
    pub fn pnl(&mut self, p: &PnlSnapshot) -> Result<Entry, EntryError> {
        self.entry(
            "pnl".to_string(),
            p.ts_ns,
            [
                ("equity", p.equity.to_string()),
                ("realized", p.realized.to_string()),
                ("unrealized", p.unrealized.to_string()),
            ],
        )
    }

    /// The `payouts` entry of a lock-box sweep: `amount` in `currency`, under the caller's
    /// idempotency key.
    pub fn payout(
        &mut self,
        ts_ns: u64,
        amount: Money,
        currency: &str,
        idempotency_key: &str,
    ) -> Result<Entry, EntryError> {
        self.entry(
            "payouts".to_string(),
            ts_ns,
            [
                ("amount", amount.to_string()),
                ("currency", currency.to_string()),
                ("idempotency_key", idempotency_key.to_string()),
            ],
        )
    }

    fn names(&self, id: InstrumentId) -> Result<&(String, String, String), EntryError> {
        self.names
            .get(id.index())
            .ok_or(EntryError::UnknownInstrument(id.0, self.names.len()))
    }

    /// An entry of `stream` for an event at `ts_ns`: id, then `key`, `ts` and `fields`.
    fn entry<const N: usize>(
        &mut self,
        stream: String,
        ts_ns: u64,
        fields: [(&'static str, String); N],
    ) -> Result<Entry, EntryError> {
        // Check the key can be made before taking an id, so a refused event leaves no gap.
        let ms = ts_ns / NS_PER_MS;
        if ms > super::key::MAX_UNIX_MS {
            return Err(KeyError::TimeOutOfRange(ms).into());
        }
        let id = self.ids.next(&stream, ts_ns);
        let key = event_key(id.ms, &format!("{}/{stream}", self.instance), id.seq)?;
        let mut all = Vec::with_capacity(N + 2);
        all.push(("key".to_string(), key.to_string()));
        all.push(("ts".to_string(), ts_ns.to_string()));
        all.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
        Ok(Entry {
            stream,
            id: id.to_string(),
            fields: all,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxx_hot::ids::{Symbol, Venue};
    use maxx_hot::num::{Price, Qty};
    use maxx_hot::records::{
        ExecReport, FAMILIES, Factor, Fill, Order, OrderId, Origin, RejectReason, Side, Signal, SignalSide, Stamp,
        Tick, Tif, Touch,
    };

    const T0: u64 = 1_767_225_600_123_456_789; // 2026-01-01T00:00:00.123456789Z

    fn index() -> InstrumentIndex {
        InstrumentIndex::new([
            (Symbol::new("BTCUSDT").unwrap(), [None; Venue::COUNT]),
            (Symbol::new("ETHUSDT").unwrap(), [None; Venue::COUNT]),
        ])
        .unwrap()
    }

    fn price(s: &str) -> Price {
        s.parse().unwrap()
    }

    fn qty(s: &str) -> Qty {
        s.parse().unwrap()
    }

    fn trade(instrument: u16, seq: u64, exchange_ns: u64, recv_ns: u64) -> Record {
        Record::Tick(Tick {
            instrument: InstrumentId(instrument),
            venue: Venue::Binance,
            body: TickBody::Trade {
                price: price("97000.5"),
                qty: qty("0.012"),
                aggressor: Side::Sell,
            },
            seq,
            exchange_ns,
            recv_ns,
            stamp: Stamp(0),
        })
    }

    fn order(id: u64, kind: OrderKind, ts_ns: u64) -> Record {
        Record::Order(Order {
            id: OrderId(id),
            instrument: InstrumentId(1),
            venue: Venue::Bybit,
            side: Side::Buy,
            qty: qty("1.5"),
            kind,
            tif: Tif::Ioc,
            pin_venue: false,
            touch: Touch::default(),
            origin: Origin::Alpha,
            client_id: 0,
            mix: [Factor::ZERO; FAMILIES],
            reduce_only: false,
            ts_ns,
            stamp: Stamp(0),
        })
    }

    fn fill(order_id: u64, ts_ns: u64) -> Record {
        Record::Report(ExecReport::Fill(Fill {
            order_id: OrderId(order_id),
            instrument: InstrumentId(0),
            venue: Venue::Coinbase,
            side: Side::Sell,
            price: price("97001"),
            qty: qty("0.25"),
            fee: "-0.0125".parse().unwrap(),
            liquidity: Liquidity::Maker,
            last: true,
            ts_ns,
        }))
    }

    fn fields(e: &Entry) -> Vec<(&str, &str)> {
        e.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn key_of(e: &Entry) -> &str {
        &e.fields[0].1
    }

    #[test]
    fn trade_tick_entry() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let e = b.record(&trade(0, 777, T0, T0 + 5_000)).unwrap().unwrap();
        assert_eq!(e.stream, "ticks:BTCUSDT");
        assert_eq!(e.id, "1767225600123-0");
        let key = event_key(1_767_225_600_123, "main/ticks:BTCUSDT", 0)
            .unwrap()
            .to_string();
        assert_eq!(
            fields(&e),
            vec![
                ("key", key.as_str()),
                ("ts", "1767225600123456789"),
                ("price", "97000.5"),
                ("volume", "0.012"),
                ("venue", "binance"),
                ("recv_ts", "1767225600123461789"),
                ("side", "sell"),
                ("seq", "777"),
            ]
        );
    }

    #[test]
    fn tick_without_exchange_time_uses_receive_time() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let e = b.record(&trade(1, 1, 0, T0)).unwrap().unwrap();
        assert_eq!(e.stream, "ticks:ETHUSDT");
        assert_eq!(fields(&e)[1], ("ts", "1767225600123456789"));
        assert_eq!(e.id, "1767225600123-0");
    }

    #[test]
    fn quotes_and_other_reports_have_no_entry() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let quote = Record::Tick(Tick {
            instrument: InstrumentId(0),
            ..Tick::EMPTY
        });
        assert_eq!(b.record(&quote), Ok(None));
        let reject = Record::Report(ExecReport::Reject {
            order_id: OrderId(1),
            instrument: InstrumentId(0),
            side: Side::Buy,
            qty: qty("1"),
            reason: RejectReason::VenueReject,
        });
        assert_eq!(b.record(&reject), Ok(None));
        let ack = Record::Report(ExecReport::Ack {
            order_id: OrderId(1),
            venue_order_id: 9,
        });
        assert_eq!(b.record(&ack), Ok(None));
        // Nothing was numbered.
        assert_eq!(b.ids_mut().last("ticks:BTCUSDT"), None);
    }

    #[test]
    fn signal_entry() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let s = Record::Signal(Signal {
            instrument: InstrumentId(0),
            score: Factor::from_num(-0.5),
            side: SignalSide::Sell,
            confidence: Factor::from_num(0.75),
            mix: [Factor::ZERO; FAMILIES],
            ts_ns: T0,
            tick_seq: 3,
            stamp: Stamp(0),
        });
        let e = b.record(&s).unwrap().unwrap();
        assert_eq!(e.stream, "signals:BTCUSDT");
        assert_eq!(e.id, "1767225600123-0");
        let f = fields(&e);
        assert_eq!(f[0].0, "key");
        assert_eq!(
            f[1..],
            [
                ("ts", "1767225600123456789"),
                ("score", "-0.5"),
                ("side", "sell"),
                ("confidence", "0.75"),
            ]
        );
    }

    #[test]
    fn order_entries_market_and_limit() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let m = b.record(&order(41, OrderKind::Market, T0)).unwrap().unwrap();
        assert_eq!(m.stream, "orders");
        assert_eq!(
            fields(&m)[1..],
            [
                ("ts", "1767225600123456789"),
                ("id", "41"),
                ("symbol", "ETHUSDT"),
                ("qty", "1.5"),
                ("side", "buy"),
                ("venue", "bybit"),
                ("type", "market"),
                ("price", ""),
                ("tif", "ioc"),
                ("origin", "alpha"),
            ]
        );
        let l = b
            .record(&order(42, OrderKind::Limit(price("3100.25")), T0))
            .unwrap()
            .unwrap();
        assert_eq!(l.id, "1767225600123-1", "same millisecond: next n");
        assert_eq!(fields(&l)[7], ("type", "limit"));
        assert_eq!(fields(&l)[8], ("price", "3100.25"));
        assert_ne!(key_of(&m), key_of(&l));
    }

    #[test]
    fn fill_entry() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let e = b.record(&fill(41, T0)).unwrap().unwrap();
        assert_eq!(e.stream, "fills");
        assert_eq!(
            fields(&e)[1..],
            [
                ("ts", "1767225600123456789"),
                ("order_id", "41"),
                ("price", "97001"),
                ("fee", "-0.0125"),
                ("qty", "0.25"),
                ("side", "sell"),
                ("symbol", "BTCUSDT"),
                ("venue", "coinbase"),
                ("liquidity", "maker"),
            ]
        );
    }

    #[test]
    fn pnl_entry() {
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let e = b
            .pnl(&PnlSnapshot {
                ts_ns: T0,
                equity: "10012.5".parse().unwrap(),
                realized: "15".parse().unwrap(),
                unrealized: "-2.5".parse().unwrap(),
            })
            .unwrap();
        assert_eq!(e.stream, "pnl");
        assert_eq!(e.id, "1767225600123-0");
        assert_eq!(
            fields(&e)[1..],
            [
                ("ts", "1767225600123456789"),
                ("equity", "10012.5"),
                ("realized", "15"),
                ("unrealized", "-2.5"),
            ]
        );
    }

    #[test]
    fn ids_increase_strictly_per_stream_even_when_time_goes_back() {
        let mut ids = StreamIds::new();
        let ms = |m: u64| m * NS_PER_MS;
        let got: Vec<String> = [ms(10), ms(10), ms(12), ms(11), ms(12) + 999_999, ms(13)]
            .into_iter()
            .map(|t| ids.next("fills", t).to_string())
            .collect();
        assert_eq!(got, ["10-0", "10-1", "12-0", "12-1", "12-2", "13-0"]);
        // Another stream has its own sequence.
        assert_eq!(ids.next("orders", ms(11)).to_string(), "11-0");
        // Redis refuses 0-0.
        assert_eq!(ids.next("pnl", 0).to_string(), "0-1");
        assert_eq!(ids.next("pnl", 0).to_string(), "0-2");
    }

    #[test]
    fn resume_continues_above_the_given_top() {
        let mut ids = StreamIds::new();
        ids.resume("orders", "500-7".parse().unwrap());
        assert_eq!(ids.next("orders", 400 * NS_PER_MS).to_string(), "500-8");
        assert_eq!(ids.next("orders", 501 * NS_PER_MS).to_string(), "501-0");
        ids.resume("fills", EntryId { ms: 9, seq: u64::MAX });
        assert_eq!(ids.next("fills", 9 * NS_PER_MS).to_string(), "10-0");
    }

    #[test]
    fn same_records_same_entries_in_a_fresh_builder() {
        let records = [
            trade(0, 1, T0, T0),
            trade(0, 2, T0, T0),
            order(1, OrderKind::Market, T0),
            fill(1, T0 + NS_PER_MS),
            fill(1, T0),
        ];
        let run = || {
            let mut b = EntryBuilder::new("main", &index()).unwrap();
            records
                .iter()
                .map(|r| b.record(r).unwrap().unwrap())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert_eq!(a[4].id, "1767225600124-1");
        let keys: std::collections::HashSet<&str> = a.iter().map(key_of).collect();
        assert_eq!(keys.len(), a.len());
        // Another instance gives other keys for the same ids.
        let mut other = EntryBuilder::new("backup", &index()).unwrap();
        let o = other.record(&records[0]).unwrap().unwrap();
        assert_eq!(o.id, a[0].id);
        assert_ne!(key_of(&o), key_of(&a[0]));
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        assert_eq!(
            EntryBuilder::new("", &index()).unwrap_err(),
            EntryError::BadInstance(String::new())
        );
        assert!(matches!(
            EntryBuilder::new("a b", &index()),
            Err(EntryError::BadInstance(_))
        ));
        let mut b = EntryBuilder::new("main", &index()).unwrap();
        let err = b.record(&trade(7, 1, T0, T0)).unwrap_err();
        assert_eq!(err, EntryError::UnknownInstrument(7, 2));
        assert_eq!(
            err.to_string(),
            "instrument id 7 is not in the instrument index (2 instruments)"
        );
        assert!("12".parse::<EntryId>().is_err());
        assert!("a-1".parse::<EntryId>().is_err());
        assert!("1-".parse::<EntryId>().is_err());
        assert!("1-+2".parse::<EntryId>().is_err());
        assert_eq!("5-3".parse::<EntryId>().unwrap(), EntryId { ms: 5, seq: 3 });
    }

    #[test]
    fn stream_kinds() {
        assert_eq!(StreamKind::of("ticks:BTCUSDT"), StreamKind::Ticks);
        assert_eq!(StreamKind::of("signals:BTCUSDT"), StreamKind::Signals);
        assert_eq!(StreamKind::of("orders"), StreamKind::Orders);
        assert_eq!(StreamKind::of("fills"), StreamKind::Fills);
        assert_eq!(StreamKind::of("pnl"), StreamKind::Pnl);
        assert_eq!(StreamKind::of("governor"), StreamKind::Other);
        for (i, k) in StreamKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        assert!(StreamKind::Ticks.sheddable() && StreamKind::Signals.sheddable());
        assert!(!StreamKind::Orders.sheddable() && !StreamKind::Fills.sheddable());
        assert!(!StreamKind::Pnl.sheddable() && !StreamKind::Other.sheddable());
    }
}

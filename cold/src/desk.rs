//! The order desk: order entry for operators and other programs, behind the gRPC
//! `ExecutionService` (`proto/execution.proto`) and `POST /order` / `POST /cancel`.
//!
//! A request is validated here, completely, before anything reaches the engine: the
//! client order id, the symbol (one of the configured ones), side, type and time in force
//! (only combinations that make sense), the quantity and price as exact decimals on the
//! instrument's lot and tick, and the venue (it must list the symbol). A valid order becomes an
//! [`OrderIntent`] of [`Origin::Manual`] with [`Sizing::Delta`], the latest touch the desk has
//! seen on the tick tap, and a numeric client id the desk assigns (a counter from 1, so never
//! reused within a run); it is pushed onto the `manual` queue and passes Risk's gate exactly like
//! Alpha's intents. The desk then waits, up to [`ACK_WAIT`], for the first decisive record about
//! it:
//!
//! - a Risk [`Refusal`](maxx_hot::stage::risk::Refusal) carrying the intent (correlated by the
//!   client id): `REJECTED` with the reason's stable name, except HALTED and the kill switch,
//!   which fail the call with `FAILED_PRECONDITION`;
//! - Execution's records, correlated through the [`Order`](maxx_hot::records::Order) record
//!   (which carries the client id and the engine order id): `Reject` → `REJECTED`, `Ack` →
//!   `ACCEPTED`, fills → `FILLED` / `PARTIALLY_FILLED`, `Cancelled` → `CANCELLED`, `Unknown` →
//!   `UNKNOWN`. Market, IOC and FOK orders are answered only when they are done, GTC and
//!   post-only limits at the venue's acknowledgement. Records of one drain pass are applied
//!   together before anyone is answered, so an ack and a fill that arrive together answer
//!   `FILLED`.
//!
//! No decision within the wait answers `UNKNOWN` (not an error); the order may still be working.
//!
//! **Idempotency.** The same `client_order_id` with the same contents (compared after
//! validation, so `"0.0010"` equals `"0.001"`) never places a second order: it returns the first
//! decisive answer, or waits again while there is none. Different contents are
//! `ALREADY_EXISTS`. The desk remembers [`REMEMBERED`] client order ids; when full it forgets the
//! oldest order that is final (or that Risk never answered for [`LOST_AFTER`]: its refusal fell
//! off a full tap), and refuses new orders (`UNAVAILABLE`) only if every remembered order is
//! still working.
//!
//! **Cancels** go by client order id or engine order id (also of orders the desk did not enter:
//! it follows every open order on the tap) as [`ExecCommand::Cancel`] on the `exec_cmd` queue,
//! and wait for Execution's `Cancelled` or `CancelRejected`. A cancel already in flight for the
//! same order is joined, not repeated.
//!
//! **Threads.** The desk's state is one `std::sync::Mutex`, held only for short, non-blocking
//! work: by request handlers (never across an `.await`) and by the cold drain loop through
//! [`DeskFeed`], a [`TapObserver`] that copies the records it needs during a pass and applies
//! them under one lock when the pass ends. Waiters are tokio oneshot channels. Nothing here runs
//! on a hot thread, and a full queue into the engine is an error for the caller, never a wait.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use maxx_hot::clock::{mono_ns, wall_ns};
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Venue};
use maxx_hot::num::{DecimalError, Price, Qty};
use maxx_hot::records::{
    ExecReport, FAMILIES, Factor, OrderId, OrderIntent, Origin, RejectReason, Side, Sizing, Stamp, TickBody, Tif, Touch,
};
use maxx_hot::stage::exec::ExecCommand;
use tokio::sync::{Notify, oneshot};
use tonic::Status;

use crate::config::Config;
use crate::grpc::pb;
use crate::grpc::pb::cancel_request::Target;
use crate::taps::{Record, TapObserver};

/// How long `SubmitOrder` waits for a decisive answer before answering `UNKNOWN`.
pub const ACK_WAIT: Duration = Duration::from_secs(5);
/// How long `CancelOrder` waits for Execution's answer before answering `timeout`.
pub const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// How many client order ids the desk remembers (for idempotency and cancels).
pub const REMEMBERED: usize = 16_384;
/// Longest client order id, in characters of `[A-Za-z0-9_-]`.
pub const MAX_CLIENT_ORDER_ID: usize = 36;
/// A submission Risk has not answered for this long is taken as lost and may be forgotten.
pub const LOST_AFTER: Duration = Duration::from_secs(60);
/// Longest symbol, quantity, price or venue string accepted (a decimal of an `i64` has 20
/// digits, a symbol at most 24 characters).
const MAX_FIELD: usize = 64;
/// Open orders entered elsewhere (Alpha, trims) the desk follows for cancels by order id; Risk
/// holds far fewer open at once.
const MAX_OTHER_ORDERS: usize = 65_536;

/// An instrument's increments, from `symbols[].tick_size` and `lot_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Price increment.
    pub tick_size: Price,
    /// Quantity increment.
    pub lot_size: Qty,
}

/// The order desk. Shared (`Arc`) by the gRPC service, the HTTP API and the drain loop's
/// [`DeskFeed`].
#[derive(Debug)]
pub struct Desk {
    index: Arc<InstrumentIndex>,
    rules: Vec<Rules>,
    manual: Arc<ArrayQueue<OrderIntent>>,
    exec_cmd: Arc<ArrayQueue<ExecCommand>>,
    ack_wait: Duration,
    cancel_wait: Duration,
    capacity: usize,
    book: Mutex<Book>,
    /// Requests waiting for an answer from the taps; while any wait, the drain loop polls the
    /// taps continuously instead of on its timer (see [`Desk::waiting`]).
    waiting: AtomicUsize,
    /// Wakes the drain loop when a request starts waiting.
    wake: Notify,
}

/// Counts one request as waiting for as long as it lives (dropped on every way out of the
/// wait, a cancelled request future included).
struct Waiting<'a>(&'a Desk);

impl<'a> Waiting<'a> {
    fn start(desk: &'a Desk) -> Self {
        desk.waiting.fetch_add(1, Ordering::AcqRel);
        desk.wake.notify_one();
        Self(desk)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A validated order: what idempotency compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ticket {
    instrument: InstrumentId,
    side: Side,
    qty: Qty,
    limit: Option<Price>,
    kind: pb::OrderType,
    tif: Tif,
    venue: Venue,
    pinned: bool,
}

/// Who entered an open order the desk follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The desk, under this numeric client id.
    Desk(u64),
    /// Someone else (Alpha, a trim); forgotten once final.
    Other,
}

/// One order the desk entered.
#[derive(Debug)]
struct Entry {
    key: String,
    ticket: Ticket,
    created: Instant,
    order_id: Option<OrderId>,
    venue: Venue,
    venue_order_id: Option<u64>,
    refused: Option<RejectReason>,
    rejected: Option<RejectReason>,
    acked: bool,
    unknown: bool,
    cancelled: bool,
    done: bool,
    filled: Qty,
    /// Σ price × quantity of the fills, in raw units (10⁻¹⁶).
    cost: i128,
    /// The first decisive answer (replaced only while its status is UNKNOWN).
    answer: Option<pb::OrderAck>,
    waiters: Vec<oneshot::Sender<pb::OrderAck>>,
}

/// A cancel in flight.
#[derive(Debug)]
struct CancelWait {
    sent: Instant,
    key: String,
    waiters: Vec<oneshot::Sender<Result<pb::CancelAck, Status>>>,
}

/// Everything behind the desk's lock.
#[derive(Debug)]
struct Book {
    entries: HashMap<u64, Entry>,
    keys: HashMap<String, u64>,
    /// Numeric ids in the order they were entered (eviction order).
    fifo: VecDeque<u64>,
    orders: HashMap<OrderId, Owner>,
    cancels: HashMap<OrderId, CancelWait>,
    /// Latest touch per instrument and venue, from the tick tap.
    touches: Vec<[Touch; Venue::COUNT]>,
    next_client_id: u64,
}

impl Desk {
    /// A desk for these instruments (`rules` in instrument-id order) feeding these queues.
    pub fn new(
        index: Arc<InstrumentIndex>,
        rules: Vec<Rules>,
        manual: Arc<ArrayQueue<OrderIntent>>,
        exec_cmd: Arc<ArrayQueue<ExecCommand>>,
    ) -> Self {
        let book = Book {
            entries: HashMap::new(),
            keys: HashMap::new(),
            fifo: VecDeque::new(),
            orders: HashMap::new(),
            cancels: HashMap::new(),
            touches: vec![[Touch::default(); Venue::COUNT]; index.len()],
            next_client_id: 1,
        };
        Self {
            index,
            rules,
            manual,
            exec_cmd,
            ack_wait: ACK_WAIT,
            cancel_wait: CANCEL_WAIT,
            capacity: REMEMBERED,
            book: Mutex::new(book),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
        }
    }

    /// A desk with the tick and lot sizes of `config.symbols` (whose order is the index's).
    pub fn from_config(
        config: &Config,
        index: Arc<InstrumentIndex>,
        manual: Arc<ArrayQueue<OrderIntent>>,
        exec_cmd: Arc<ArrayQueue<ExecCommand>>,
    ) -> Self {
        let rules = config
            .symbols
            .iter()
            .map(|s| Rules {
                tick_size: s.tick_size,
                lot_size: s.lot_size,
            })
            .collect();
        Self::new(index, rules, manual, exec_cmd)
    }

    /// The same desk with other waits (tests use short ones).
    pub fn with_waits(mut self, ack: Duration, cancel: Duration) -> Self {
        self.ack_wait = ack;
        self.cancel_wait = cancel;
        self
    }

    /// The same desk remembering at most `orders` client order ids.
    pub fn with_capacity(mut self, orders: usize) -> Self {
        self.capacity = orders.max(1);
        self
    }

    /// Requests waiting for records from the taps. The drain loop drains continuously while
    /// this is above zero, so an answer waits for the hot path, not for the loop's timer.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Completes when a request starts waiting (the drain loop then drains at once).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// The observer to add to the cold side's [`TapDrain`](crate::taps::TapDrain).
    pub fn feed(self: &Arc<Self>) -> DeskFeed {
        DeskFeed {
            desk: Arc::clone(self),
            records: Vec::with_capacity(256),
            touches: vec![[Touch::default(); Venue::COUNT]; self.index.len()],
            touched: false,
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // Nothing panics while holding the lock; if something ever did, the book is still
        // consistent record by record, so carry on with it.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `SubmitOrder`: validates, enters the order (once per client order id) and waits for a
    /// decisive answer (see the module doc).
    pub async fn submit(&self, request: &pb::OrderRequest) -> Result<pb::OrderAck, Status> {
        let ticket = self.validate(request)?;
        let key = &request.client_order_id;
        let (client_id, rx) = {
            let mut book = self.book();
            match book.keys.get(key).copied() {
                Some(client_id) => {
                    let Some(e) = book.entries.get_mut(&client_id) else {
                        return Err(Status::internal("order desk tables disagree"));
                    };
                    if e.ticket != ticket {
                        return Err(Status::already_exists(format!(
                            "client_order_id {key:?} was already used for a different order ({}); use a new id",
                            self.describe_ticket(&e.ticket)
                        )));
                    }
                    if let Some(ack) = e.settled() {
                        return outcome(ack.clone());
                    }
                    let (tx, rx) = oneshot::channel();
                    e.waiters.retain(|w| !w.is_closed());
                    e.waiters.push(tx);
                    (client_id, rx)
                }
                None => {
                    book.make_room(self.capacity)?;
                    let client_id = book.next_client_id;
                    let intent = OrderIntent {
                        instrument: ticket.instrument,
                        venue: ticket.venue,
                        sizing: Sizing::Delta(ticket.side, ticket.qty),
                        limit: ticket.limit,
                        tif: ticket.tif,
                        pin_venue: ticket.pinned,
                        touch: book.touch(ticket.instrument, ticket.venue),
                        origin: Origin::Manual,
                        client_id,
                        score: Factor::ZERO,
                        mix: [Factor::ZERO; FAMILIES],
                        stop: Price::ZERO,
                        reduce_only: false,
                        ts_ns: wall_ns(),
                        stamp: Stamp(mono_ns()),
                    };
                    if self.manual.push(intent).is_err() {
                        return Err(Status::unavailable(
                            "the manual order queue into the RiskSentinel is full; nothing was placed, retry shortly",
                        ));
                    }
                    book.next_client_id += 1;
                    let (tx, rx) = oneshot::channel();
                    book.insert(client_id, Entry::new(key.clone(), ticket, vec![tx]));
                    tracing::info!(
                        client_order_id = %key,
                        client_id,
                        symbol = %self.index.get(ticket.instrument).symbol,
                        side = ticket.side.name(),
                        qty = %ticket.qty,
                        price = %ticket.limit.map_or(String::new(), |p| p.to_string()),
                        tif = ticket.tif.name(),
                        venue = ticket.venue.name(),
                        "manual order entered"
                    );
                    (client_id, rx)
                }
            }
        };
        let waiting = Waiting::start(self);
        let answer = tokio::time::timeout(self.ack_wait, rx).await;
        drop(waiting);
        if let Ok(Ok(ack)) = answer {
            return outcome(ack);
        }
        let book = self.book();
        let Some(e) = book.entries.get(&client_id) else {
            return Err(Status::unavailable(
                "the order desk forgot the order while waiting; retry",
            ));
        };
        // What is known so far; no status yet reads UNKNOWN.
        let mut ack = e.ack(&self.index);
        if e.status().is_none() {
            ack.message = format!(
                "no decision within {} ms: the order may still be working; submit the same request again to wait again, or cancel it",
                self.ack_wait.as_millis()
            );
        }
        Ok(ack)
    }

    /// `CancelOrder`: asks Execution to cancel one open order and waits for its answer (see the
    /// module doc).
    pub async fn cancel(&self, request: &pb::CancelRequest) -> Result<pb::CancelAck, Status> {
        let (order_id, key, rx) = {
            let mut book = self.book();
            let (order_id, key) = match &request.target {
                None => {
                    return Err(Status::invalid_argument(
                        "target: required, client_order_id or order_id",
                    ));
                }
                Some(Target::ClientOrderId(key)) => {
                    check_client_order_id(key)?;
                    let Some(e) = book.keys.get(key).and_then(|id| book.entries.get(id)) else {
                        return Err(Status::not_found(format!(
                            "no order with client_order_id {key:?} (the desk remembers the last {} it entered)",
                            self.capacity
                        )));
                    };
                    if e.is_final() {
                        return Err(already_final(key, e));
                    }
                    let Some(order_id) = e.order_id else {
                        return Err(Status::unavailable(format!(
                            "order {key:?} is not placed yet (the RiskSentinel has not answered); retry shortly"
                        )));
                    };
                    (order_id, key.clone())
                }
                Some(Target::OrderId(0)) => {
                    return Err(Status::invalid_argument("order_id: must be > 0"));
                }
                Some(Target::OrderId(n)) => {
                    let order_id = OrderId(*n);
                    match book.orders.get(&order_id) {
                        None => {
                            return Err(Status::not_found(format!("no open order with order_id {n}")));
                        }
                        Some(Owner::Desk(id)) => match book.entries.get(id) {
                            Some(e) if e.is_final() => return Err(already_final(&e.key, e)),
                            Some(e) => (order_id, e.key.clone()),
                            None => (order_id, String::new()),
                        },
                        Some(Owner::Other) => (order_id, String::new()),
                    }
                }
            };
            let (tx, rx) = oneshot::channel();
            match book.cancels.get_mut(&order_id) {
                Some(w) if w.sent.elapsed() < self.cancel_wait => {
                    w.waiters.retain(|x| !x.is_closed());
                    w.waiters.push(tx);
                }
                _ => {
                    if self.exec_cmd.push(ExecCommand::Cancel(order_id)).is_err() {
                        return Err(Status::unavailable(
                            "the Execution command queue is full; nothing was cancelled, retry shortly",
                        ));
                    }
                    tracing::info!(order_id = order_id.0, client_order_id = %key, "cancel requested");
                    book.cancels.insert(
                        order_id,
                        CancelWait {
                            sent: Instant::now(),
                            key: key.clone(),
                            waiters: vec![tx],
                        },
                    );
                }
            }
            (order_id, key, rx)
        };
        let waiting = Waiting::start(self);
        let answer = tokio::time::timeout(self.cancel_wait, rx).await;
        drop(waiting);
        match answer {
            Ok(Ok(answer)) => answer,
            _ => Ok(pb::CancelAck {
                order_id: order_id.0,
                cancelled: false,
                message: format!(
                    "no answer from Execution within {} ms; the cancel may still apply: cancel again to see",
                    self.cancel_wait.as_millis()
                ),
                client_order_id: key,
                reason: "timeout".to_string(),
                cancelled_qty: String::new(),
            }),
        }
    }

    /// Applies one drain pass: the latest touches, then the order records in tap order; then
    /// answers every waiter whose order now has a decisive answer.
    fn absorb(&self, records: &[Record], touches: Option<&[[Touch; Venue::COUNT]]>) {
        let mut book = self.book();
        if let Some(t) = touches {
            book.touches.copy_from_slice(t);
        }
        let mut touched: Vec<u64> = Vec::new();
        for r in records {
            if let Some(id) = book.apply(r)
                && !touched.contains(&id)
            {
                touched.push(id);
            }
        }
        for id in touched {
            let Some(e) = book.entries.get_mut(&id) else { continue };
            let open = e
                .answer
                .as_ref()
                .is_none_or(|a| a.status == pb::OrderStatus::Unknown as i32);
            if open && e.decisive() {
                let ack = e.ack(&self.index);
                for w in e.waiters.drain(..) {
                    let _ = w.send(ack.clone());
                }
                e.answer = Some(ack);
            }
        }
    }

    /// Checks every field of `r`; the first problem is the answer, naming the field.
    fn validate(&self, r: &pb::OrderRequest) -> Result<Ticket, Status> {
        check_client_order_id(&r.client_order_id)?;
        let instrument = self.instrument(&r.symbol)?;
        let symbol = self.index.get(instrument).symbol;
        let rules = self.rules.get(instrument.index()).copied().unwrap_or(Rules {
            tick_size: Price::ZERO,
            lot_size: Qty::ZERO,
        });
        let side = match pb::Side::try_from(r.side) {
            Ok(pb::Side::Buy) => Side::Buy,
            Ok(pb::Side::Sell) => Side::Sell,
            _ => {
                return Err(invalid(format!(
                    "side: required, SIDE_BUY or SIDE_SELL (got {})",
                    r.side
                )));
            }
        };
        let kind = match pb::OrderType::try_from(r.r#type) {
            Ok(pb::OrderType::Unspecified) | Err(_) => {
                return Err(invalid(format!(
                    "type: required, ORDER_TYPE_MARKET, ORDER_TYPE_LIMIT or ORDER_TYPE_LIMIT_MAKER (got {})",
                    r.r#type
                )));
            }
            Ok(kind) => kind,
        };
        let Ok(tif) = pb::TimeInForce::try_from(r.time_in_force) else {
            return Err(invalid(format!(
                "time_in_force: TIME_IN_FORCE_GTC, TIME_IN_FORCE_IOC, TIME_IN_FORCE_FOK or unspecified (got {})",
                r.time_in_force
            )));
        };
        use pb::OrderType as T;
        use pb::TimeInForce as F;
        let tif = match (kind, tif) {
            (T::Market, F::Unspecified | F::Ioc) => Tif::Ioc,
            (T::Market, F::Gtc) => {
                return Err(invalid(
                    "time_in_force: a market order cannot rest, so GTC is not allowed (use IOC or leave it unspecified)",
                ));
            }
            (T::Market, F::Fok) => {
                return Err(invalid(
                    "time_in_force: FOK is for limit orders; a market order is IOC (use ORDER_TYPE_LIMIT with FOK)",
                ));
            }
            (T::Limit, F::Unspecified | F::Gtc) => Tif::Gtc,
            (T::Limit, F::Ioc) => Tif::Ioc,
            (T::Limit, F::Fok) => Tif::Fok,
            (T::LimitMaker, F::Unspecified | F::Gtc) => Tif::PostOnly,
            (T::LimitMaker, F::Ioc | F::Fok) => {
                return Err(invalid(
                    "time_in_force: a post-only order (ORDER_TYPE_LIMIT_MAKER) only rests, so IOC and FOK are not allowed (use GTC or leave it unspecified)",
                ));
            }
            (T::Unspecified, _) => return Err(invalid("type: required")),
        };
        let qty: Qty = decimal("qty", &r.qty, "0.001")?;
        if qty.is_zero() {
            return Err(invalid(format!("qty: must be > 0, got {}", shown(&r.qty))));
        }
        if !rules.lot_size.is_zero() && qty.raw() % rules.lot_size.raw() != 0 {
            return Err(invalid(format!(
                "qty: {qty} is not a multiple of {symbol}'s lot size {}",
                rules.lot_size
            )));
        }
        let limit = if kind == T::Market {
            if !r.price.is_empty() {
                return Err(invalid(format!(
                    "price: must be empty for a market order (it takes the touch), got {}",
                    shown(&r.price)
                )));
            }
            None
        } else {
            if r.price.is_empty() {
                return Err(invalid(format!("price: required for a {} order", kind.as_str_name())));
            }
            let price: Price = decimal("price", &r.price, "61837.63")?;
            if price.is_zero() {
                return Err(invalid(format!("price: must be > 0, got {}", shown(&r.price))));
            }
            if !rules.tick_size.is_zero() && price.raw() % rules.tick_size.raw() != 0 {
                return Err(invalid(format!(
                    "price: {price} is not a multiple of {symbol}'s tick size {}",
                    rules.tick_size
                )));
            }
            Some(price)
        };
        let listed = |v: Venue| self.index.get(instrument).venue_symbols[v.index()].is_some();
        let (venue, pinned) = if r.venue.is_empty() {
            let Some(first) = Venue::ALL.into_iter().find(|v| listed(*v)) else {
                return Err(invalid(format!("symbol: {symbol} is listed on no venue")));
            };
            (first, false)
        } else {
            let Some(venue) = Venue::from_name(&r.venue) else {
                let known: Vec<&str> = Venue::ALL.iter().map(|v| v.name()).collect();
                return Err(invalid(format!(
                    "venue: unknown venue {} (known: {}; empty lets the router choose)",
                    shown(&r.venue),
                    known.join(", ")
                )));
            };
            if !listed(venue) {
                let on: Vec<&str> = Venue::ALL.into_iter().filter(|v| listed(*v)).map(Venue::name).collect();
                return Err(invalid(format!(
                    "venue: {venue} does not list {symbol} (it is listed on: {})",
                    on.join(", ")
                )));
            }
            (venue, true)
        };
        Ok(Ticket {
            instrument,
            side,
            qty,
            limit,
            kind,
            tif,
            venue,
            pinned,
        })
    }

    fn instrument(&self, symbol: &str) -> Result<InstrumentId, Status> {
        if symbol.is_empty() {
            return Err(invalid(format!("symbol: required, one of {}", self.symbols())));
        }
        let found = (symbol.len() <= MAX_FIELD)
            .then(|| self.index.by_symbol(symbol))
            .flatten();
        found.ok_or_else(|| {
            invalid(format!(
                "symbol: unknown symbol {} (configured: {})",
                shown(symbol),
                self.symbols()
            ))
        })
    }

    fn symbols(&self) -> String {
        let names: Vec<&str> = self.index.iter().map(|i| i.symbol.as_str()).collect();
        names.join(", ")
    }

    fn describe_ticket(&self, t: &Ticket) -> String {
        format!(
            "{} {} {} {} {} on {}{}",
            t.kind.as_str_name(),
            t.side.name(),
            t.qty,
            self.index.get(t.instrument).symbol,
            t.limit.map_or("at the touch".to_string(), |p| format!("at {p}")),
            t.venue,
            if t.pinned { "" } else { " (router's choice)" }
        )
    }
}

impl Entry {
    fn new(key: String, ticket: Ticket, waiters: Vec<oneshot::Sender<pb::OrderAck>>) -> Self {
        Self {
            key,
            ticket,
            created: Instant::now(),
            order_id: None,
            venue: ticket.venue,
            venue_order_id: None,
            refused: None,
            rejected: None,
            acked: false,
            unknown: false,
            cancelled: false,
            done: false,
            filled: Qty::ZERO,
            cost: 0,
            answer: None,
            waiters,
        }
    }

    /// The order's status now; `None` while nothing decisive is known.
    fn status(&self) -> Option<pb::OrderStatus> {
        use pb::OrderStatus as S;
        Some(if self.refused.is_some() || self.rejected.is_some() {
            S::Rejected
        } else if self.done {
            S::Filled
        } else if self.cancelled {
            S::Cancelled
        } else if !self.filled.is_zero() {
            S::PartiallyFilled
        } else if self.unknown {
            S::Unknown
        } else if self.acked {
            S::Accepted
        } else {
            return None;
        })
    }

    /// Nothing of it is working any more.
    fn is_final(&self) -> bool {
        self.refused.is_some() || self.rejected.is_some() || self.done || self.cancelled
    }

    /// Whether the status now answers a waiter: orders that cannot rest (market, IOC, FOK) only
    /// when done; resting ones from the venue's acknowledgement.
    fn decisive(&self) -> bool {
        let immediate = matches!(self.ticket.tif, Tif::Ioc | Tif::Fok);
        match self.status() {
            None => false,
            Some(pb::OrderStatus::Accepted | pb::OrderStatus::PartiallyFilled) => !immediate,
            Some(_) => true,
        }
    }

    /// The stored answer, once it is no longer UNKNOWN.
    fn settled(&self) -> Option<&pb::OrderAck> {
        self.answer
            .as_ref()
            .filter(|a| a.status != pb::OrderStatus::Unknown as i32)
    }

    /// The ack for the order as it stands.
    fn ack(&self, index: &InstrumentIndex) -> pb::OrderAck {
        use pb::OrderStatus as S;
        let status = self.status().unwrap_or(S::Unknown);
        let reason = self.refused.or(self.rejected);
        let avg = self.avg_price();
        let avg_text = avg.map_or(String::new(), |p| p.to_string());
        let t = &self.ticket;
        let message = match status {
            S::Rejected => match (self.refused, self.rejected) {
                (Some(r), _) => format!("refused by the RiskSentinel: {} ({})", r.name(), describe(r)),
                (None, Some(r)) => format!("rejected at {}: {} ({})", self.venue, r.name(), describe(r)),
                (None, None) => String::new(),
            },
            S::Filled => format!("filled {} at {avg_text}", self.filled),
            S::PartiallyFilled => format!("filled {} of {} at {avg_text}; the rest is working", self.filled, t.qty),
            S::Cancelled if self.filled.is_zero() => "cancelled; nothing filled".to_string(),
            S::Cancelled => format!("cancelled after filling {} of {} at {avg_text}", self.filled, t.qty),
            S::Accepted => format!(
                "working at {} as venue order {}",
                self.venue,
                self.venue_order_id.unwrap_or_default()
            ),
            S::Unknown if self.unknown => format!(
                "the answer of {} was lost; the order may be live and is resolved by query, never resent",
                self.venue
            ),
            S::Unknown | S::Unspecified => String::new(),
        };
        pb::OrderAck {
            client_order_id: self.key.clone(),
            order_id: self.order_id.map_or(0, |o| o.0),
            status: status as i32,
            reject_reason: reason.map_or(String::new(), |r| r.name().to_string()),
            message,
            venue: self.venue.name().to_string(),
            venue_order_id: self.venue_order_id.map_or(String::new(), |v| v.to_string()),
            filled_qty: self.filled.to_string(),
            avg_price: avg_text,
            symbol: index.get(t.instrument).symbol.to_string(),
        }
    }

    /// Σ price × qty / Σ qty, rounded half up to 10⁻⁸; `None` before the first fill.
    fn avg_price(&self) -> Option<Price> {
        let q = i128::from(self.filled.raw());
        if q == 0 {
            return None;
        }
        let avg = (2 * self.cost + q) / (2 * q);
        Price::from_raw(i64::try_from(avg).ok()?)
    }
}

impl Book {
    fn insert(&mut self, client_id: u64, entry: Entry) {
        self.keys.insert(entry.key.clone(), client_id);
        self.entries.insert(client_id, entry);
        self.fifo.push_back(client_id);
    }

    /// Forgets old orders until one more fits: the oldest final ones (or lost submissions)
    /// first; `UNAVAILABLE` if every remembered order is still working.
    fn make_room(&mut self, capacity: usize) -> Result<(), Status> {
        let mut looked = 0;
        while self.entries.len() >= capacity {
            if looked >= self.fifo.len() {
                return Err(Status::unavailable(format!(
                    "the order desk remembers {} orders and every one is still working; cancel some or retry later",
                    self.entries.len()
                )));
            }
            let Some(id) = self.fifo.pop_front() else { break };
            looked += 1;
            let forget = self
                .entries
                .get(&id)
                .is_none_or(|e| e.is_final() || (e.order_id.is_none() && e.created.elapsed() >= LOST_AFTER));
            if !forget {
                self.fifo.push_back(id);
                continue;
            }
            if let Some(e) = self.entries.remove(&id) {
                self.keys.remove(&e.key);
                if let Some(o) = e.order_id {
                    self.orders.remove(&o);
                }
            }
        }
        Ok(())
    }

    /// The touch a new intent carries: the venue's own, else any venue's for the instrument.
    fn touch(&self, instrument: InstrumentId, venue: Venue) -> Touch {
        let Some(per_venue) = self.touches.get(instrument.index()) else {
            return Touch::default();
        };
        let known = |t: &Touch| !(t.bid.is_zero() && t.ask.is_zero() && t.last.is_zero());
        let own = per_venue[venue.index()];
        if known(&own) {
            return own;
        }
        per_venue.iter().copied().find(known).unwrap_or_default()
    }

    /// Applies one record; returns the client id of a desk order it changed.
    fn apply(&mut self, record: &Record) -> Option<u64> {
        match record {
            Record::Order(o) => {
                if o.origin == Origin::Manual
                    && let Some(e) = self.entries.get_mut(&o.client_id)
                    && e.order_id.is_none()
                {
                    e.order_id = Some(o.id);
                    e.venue = o.venue;
                    self.orders.insert(o.id, Owner::Desk(o.client_id));
                    return Some(o.client_id);
                }
                if self.orders.len() < MAX_OTHER_ORDERS {
                    self.orders.entry(o.id).or_insert(Owner::Other);
                }
                None
            }
            Record::Refusal(x) => {
                if x.intent.origin != Origin::Manual {
                    return None;
                }
                let e = self.entries.get_mut(&x.intent.client_id)?;
                if e.order_id.is_some() || e.refused.is_some() {
                    return None;
                }
                e.refused = Some(x.reason);
                Some(x.intent.client_id)
            }
            Record::Report(report) => self.report(report),
            _ => None,
        }
    }

    fn report(&mut self, report: &ExecReport) -> Option<u64> {
        let order_id = match *report {
            ExecReport::Routed { order_id, .. }
            | ExecReport::Ack { order_id, .. }
            | ExecReport::Cancelled { order_id, .. }
            | ExecReport::Reject { order_id, .. }
            | ExecReport::Unknown { order_id, .. }
            | ExecReport::CancelRejected { order_id, .. } => order_id,
            ExecReport::Fill(f) => f.order_id,
        };
        let owner = self.orders.get(&order_id).copied();
        let mut changed = None;
        match owner {
            Some(Owner::Desk(id)) => {
                if let Some(e) = self.entries.get_mut(&id) {
                    match *report {
                        ExecReport::Routed { venue, .. } => e.venue = venue,
                        ExecReport::Ack { venue_order_id, .. } => {
                            e.acked = true;
                            e.unknown = false;
                            e.venue_order_id = Some(venue_order_id);
                        }
                        ExecReport::Fill(f) => {
                            e.filled = e.filled.checked_add(f.qty).unwrap_or(e.filled);
                            e.cost += i128::from(f.price.raw()) * i128::from(f.qty.raw());
                            e.done |= f.last;
                            e.unknown = false;
                        }
                        ExecReport::Cancelled { .. } => {
                            e.cancelled = true;
                            e.unknown = false;
                        }
                        ExecReport::Reject { reason, .. } => {
                            e.rejected = Some(reason);
                            e.unknown = false;
                        }
                        ExecReport::Unknown { .. } => e.unknown = true,
                        ExecReport::CancelRejected { .. } => {}
                    }
                    changed = Some(id);
                }
            }
            Some(Owner::Other) => {
                let done = matches!(
                    *report,
                    ExecReport::Fill(maxx_hot::records::Fill { last: true, .. })
                        | ExecReport::Reject { .. }
                        | ExecReport::Cancelled { .. }
                );
                if done {
                    self.orders.remove(&order_id);
                }
            }
            None => {}
        }
        match *report {
            ExecReport::Cancelled { qty, .. } => {
                if let Some(w) = self.cancels.remove(&order_id) {
                    let ack = pb::CancelAck {
                        order_id: order_id.0,
                        cancelled: true,
                        message: format!("cancelled; {qty} released"),
                        client_order_id: w.key,
                        reason: String::new(),
                        cancelled_qty: qty.to_string(),
                    };
                    for tx in w.waiters {
                        let _ = tx.send(Ok(ack.clone()));
                    }
                }
            }
            ExecReport::CancelRejected { reason, .. } => {
                if let Some(w) = self.cancels.remove(&order_id) {
                    let final_now = match self.orders.get(&order_id) {
                        Some(Owner::Desk(id)) => self.entries.get(id).is_none_or(Entry::is_final),
                        Some(Owner::Other) => false,
                        None => true,
                    };
                    let answer = if final_now {
                        Err(Status::failed_precondition(format!(
                            "order {} is already final: nothing to cancel",
                            order_id.0
                        )))
                    } else {
                        Ok(pb::CancelAck {
                            order_id: order_id.0,
                            cancelled: false,
                            message: format!("the cancel was refused: {} ({})", reason.name(), describe(reason)),
                            client_order_id: w.key,
                            reason: reason.name().to_string(),
                            cancelled_qty: String::new(),
                        })
                    };
                    for tx in w.waiters {
                        let _ = tx.send(answer.clone());
                    }
                }
            }
            _ => {}
        }
        changed
    }
}

/// Feeds the desk from the cold drain loop: a [`TapObserver`] that keeps the latest touches and
/// the order records of a pass, and hands them to the desk under one lock when the pass ends.
#[derive(Debug)]
pub struct DeskFeed {
    desk: Arc<Desk>,
    records: Vec<Record>,
    touches: Vec<[Touch; Venue::COUNT]>,
    touched: bool,
}

impl TapObserver for DeskFeed {
    fn record(&mut self, record: &Record) {
        match record {
            Record::Tick(t) => {
                if let Some(slot) = self.touches.get_mut(t.instrument.index()) {
                    let touch = &mut slot[t.venue.index()];
                    match t.body {
                        TickBody::Trade { price, .. } => touch.last = price,
                        TickBody::Quote { bid, ask, .. } => {
                            touch.bid = bid;
                            touch.ask = ask;
                        }
                    }
                    self.touched = true;
                }
            }
            Record::Order(_) | Record::Report(_) | Record::Refusal(_) => self.records.push(*record),
            Record::Signal(_) | Record::Bad(_) | Record::Transition(_) | Record::Note(_) => {}
        }
    }

    fn pass_done(&mut self) {
        if self.records.is_empty() && !self.touched {
            return;
        }
        self.desk
            .absorb(&self.records, self.touched.then_some(self.touches.as_slice()));
        self.records.clear();
        self.touched = false;
    }
}

/// The ack, or `FAILED_PRECONDITION` when trading is halted (the RiskSentinel's HALTED or the
/// kill switch): the caller must not retry until an operator lifts it.
fn outcome(ack: pb::OrderAck) -> Result<pb::OrderAck, Status> {
    let halted = [RejectReason::Halted.name(), RejectReason::KillSwitch.name()];
    if ack.status == pb::OrderStatus::Rejected as i32 && halted.contains(&ack.reject_reason.as_str()) {
        return Err(Status::failed_precondition(ack.message));
    }
    Ok(ack)
}

fn already_final(key: &str, e: &Entry) -> Status {
    let status = e.status().map_or("UNKNOWN", |s| s.as_str_name());
    Status::failed_precondition(format!("order {key:?} is already final ({status}): nothing to cancel"))
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// `1..=36` characters of `[A-Za-z0-9_-]`.
fn check_client_order_id(id: &str) -> Result<(), Status> {
    const RULE: &str = "1 to 36 characters of A-Z a-z 0-9 _ -";
    if id.is_empty() {
        return Err(invalid(format!("client_order_id: required, {RULE}")));
    }
    if id.len() > MAX_CLIENT_ORDER_ID {
        return Err(invalid(format!(
            "client_order_id: too long ({} bytes), {RULE}",
            id.len()
        )));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(invalid(format!(
            "client_order_id: {} has a character outside {RULE}",
            shown(id)
        )));
    }
    Ok(())
}

/// An exact decimal field (`Qty` or `Price`), with the field named in every refusal.
fn decimal<T>(field: &str, text: &str, example: &str) -> Result<T, Status>
where
    T: std::str::FromStr<Err = DecimalError>,
{
    if text.is_empty() {
        return Err(invalid(format!(
            "{field}: required, a decimal string such as \"{example}\""
        )));
    }
    if text.len() > MAX_FIELD {
        return Err(invalid(format!(
            "{field}: too long ({} bytes) for a decimal",
            text.len()
        )));
    }
    if text.starts_with('-') {
        return Err(invalid(format!("{field}: must be > 0, got {}", shown(text))));
    }
    text.parse::<T>().map_err(|e| {
        let why = match e {
            DecimalError::TooPrecise => "more than 8 decimals".to_string(),
            DecimalError::Overflow => "too large".to_string(),
            other => format!("not a plain decimal such as \"{example}\": {other}"),
        };
        invalid(format!("{field}: {} is {why}", shown(text)))
    })
}

/// A caller's string for a message: quoted, and cut after 40 characters.
fn shown(s: &str) -> String {
    const KEEP: usize = 40;
    if s.chars().count() <= KEEP {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(KEEP).collect();
    format!("{head:?}… ({} bytes)", s.len())
}

/// A sentence for a reason code.
fn describe(reason: RejectReason) -> &'static str {
    use RejectReason as R;
    match reason {
        R::KillSwitch => {
            "the kill switch is engaged; an operator lifts it with POST /risk/resume or RiskService.Resume"
        }
        R::Halted => "trading is HALTED; an operator lifts it with POST /risk/state or POST /risk/resume",
        R::Reducing => "trading is REDUCING: only orders that reduce the position pass",
        R::MaxOrderQty => "quantity above the symbol's max_order_qty",
        R::MaxOrderNotional => "order value above the symbol's max_order_notional",
        R::MaxPosition => "the position with open orders would exceed the symbol's max_position",
        R::NoPrice => "no market price known for the symbol yet",
        R::ZeroQty => "zero quantity",
        R::Overflow => "arithmetic overflow, or a full order table",
        R::VenueReject => "the venue refused the order",
        R::NotListed => "the venue does not list the symbol",
        R::TradeRisk => "quantity times the stop distance is above risk.max_trade_risk_pct of the balance",
        R::PriceCollar => "price too far from the last trade (risk.price_collar_pct)",
        R::GrossExposure => "gross exposure would exceed risk.max_gross_notional",
        R::RateLimit => "risk.max_orders_per_sec orders already sent to the venue in the last second",
        R::DuplicateClientId => "client id already used",
        R::SelfTrade => "it would trade against one of our own resting orders",
        R::FeedNotLive => "the symbol's market data is stale: only reducing orders pass",
        R::OffTick => "price not a multiple of the symbol's tick_size",
        R::OffLot => "quantity not a multiple of the symbol's lot_size",
        R::MinNotional => "order value below the symbol's min_notional",
        R::BadInput => "malformed order",
        R::PostOnlyWouldTake => "a post-only order would have taken liquidity",
        R::VenueRateLimit => "the venue's rate limit",
        R::InsufficientFunds => "the venue says the balance is insufficient",
        R::VenueFilter => "the venue's lot, tick or notional filter",
        R::UnknownOrder => "the venue does not know the order",
        R::VenueDown => "the venue is unreachable",
        R::NoRoute => "no venue that lists the symbol is available",
        _ => "see the reason code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxx_hot::ids::{Symbol, VenueSymbol};
    use maxx_hot::num::Money;
    use maxx_hot::records::{Fill, Liquidity, Order, OrderKind, Tick};
    use maxx_hot::stage::risk::Refusal;

    const BTC: InstrumentId = InstrumentId(0);

    fn index() -> Arc<InstrumentIndex> {
        let entry = |name: &str, venues: &[Venue]| {
            let mut names = [None; Venue::COUNT];
            for v in venues {
                names[v.index()] = Some(VenueSymbol::new(name).unwrap());
            }
            (Symbol::new(name).unwrap(), names)
        };
        Arc::new(
            InstrumentIndex::new([
                entry("BTCUSDT", &[Venue::Binance, Venue::Bybit]),
                entry("ETHUSDT", &[Venue::Binance]),
            ])
            .unwrap(),
        )
    }

    struct Rig {
        desk: Arc<Desk>,
        feed: DeskFeed,
        manual: Arc<ArrayQueue<OrderIntent>>,
        exec_cmd: Arc<ArrayQueue<ExecCommand>>,
    }

    fn rig_with(manual_cap: usize, capacity: usize, wait: Duration) -> Rig {
        let manual = Arc::new(ArrayQueue::new(manual_cap));
        let exec_cmd = Arc::new(ArrayQueue::new(manual_cap));
        let rules = vec![
            Rules {
                tick_size: "0.01".parse().unwrap(),
                lot_size: "0.00001".parse().unwrap(),
            };
            2
        ];
        let desk = Arc::new(
            Desk::new(index(), rules, Arc::clone(&manual), Arc::clone(&exec_cmd))
                .with_waits(wait, wait)
                .with_capacity(capacity),
        );
        let mut feed = desk.feed();
        // A market to price against.
        feed.record(&Record::Tick(Tick {
            instrument: BTC,
            body: TickBody::Quote {
                bid: "61837.63".parse().unwrap(),
                bid_qty: "1".parse().unwrap(),
                ask: "61837.64".parse().unwrap(),
                ask_qty: "1".parse().unwrap(),
            },
            ..Tick::EMPTY
        }));
        feed.pass_done();
        Rig {
            desk,
            feed,
            manual,
            exec_cmd,
        }
    }

    fn rig() -> Rig {
        rig_with(16, REMEMBERED, Duration::from_secs(30))
    }

    fn limit_buy(id: &str, qty: &str, price: &str) -> pb::OrderRequest {
        pb::OrderRequest {
            client_order_id: id.to_string(),
            symbol: "BTCUSDT".to_string(),
            side: pb::Side::Buy as i32,
            qty: qty.to_string(),
            price: price.to_string(),
            r#type: pb::OrderType::Limit as i32,
            time_in_force: pb::TimeInForce::Gtc as i32,
            venue: String::new(),
        }
    }

    fn market_buy(id: &str, qty: &str) -> pb::OrderRequest {
        pb::OrderRequest {
            price: String::new(),
            r#type: pb::OrderType::Market as i32,
            time_in_force: pb::TimeInForce::Unspecified as i32,
            ..limit_buy(id, qty, "")
        }
    }

    /// What Risk approves from an intent, with this engine id.
    fn approved(intent: &OrderIntent, id: u64) -> Order {
        let Sizing::Delta(side, qty) = intent.sizing else {
            panic!("{intent:?}")
        };
        Order {
            id: OrderId(id),
            instrument: intent.instrument,
            venue: intent.venue,
            side,
            qty,
            kind: intent.limit.map_or(OrderKind::Market, OrderKind::Limit),
            tif: intent.tif,
            pin_venue: intent.pin_venue,
            touch: intent.touch,
            origin: intent.origin,
            client_id: intent.client_id,
            mix: intent.mix,
            reduce_only: false,
            ts_ns: intent.ts_ns,
            stamp: intent.stamp,
        }
    }

    fn fill(order: &Order, qty: &str, price: &str, last: bool) -> Record {
        Record::Report(ExecReport::Fill(Fill {
            order_id: order.id,
            instrument: order.instrument,
            venue: order.venue,
            side: order.side,
            price: price.parse().unwrap(),
            qty: qty.parse().unwrap(),
            fee: Money::ZERO,
            liquidity: Liquidity::Taker,
            last,
            ts_ns: 1,
        }))
    }

    /// Waits (bounded) for the intent a submission pushed.
    async fn next_intent(q: &ArrayQueue<OrderIntent>) -> OrderIntent {
        for _ in 0..10_000 {
            if let Some(i) = q.pop() {
                return i;
            }
            tokio::task::yield_now().await;
        }
        panic!("no intent reached the manual queue");
    }

    async fn next_cancel(q: &ArrayQueue<ExecCommand>) -> OrderId {
        for _ in 0..10_000 {
            if let Some(ExecCommand::Cancel(id)) = q.pop() {
                return id;
            }
            tokio::task::yield_now().await;
        }
        panic!("no cancel reached the Execution queue");
    }

    fn pass(feed: &mut DeskFeed, records: &[Record]) {
        for r in records {
            feed.record(r);
        }
        feed.pass_done();
    }

    #[tokio::test]
    async fn every_bad_field_is_invalid_argument_and_nothing_reaches_risk() {
        let r = rig();
        let base = limit_buy("bad-1", "0.001", "61000");
        let cases: Vec<(&str, pb::OrderRequest, &str)> = vec![
            (
                "empty id",
                pb::OrderRequest {
                    client_order_id: String::new(),
                    ..base.clone()
                },
                "client_order_id: required",
            ),
            (
                "id with a space",
                pb::OrderRequest {
                    client_order_id: "a b".into(),
                    ..base.clone()
                },
                "client_order_id",
            ),
            (
                "37-char id",
                pb::OrderRequest {
                    client_order_id: "x".repeat(37),
                    ..base.clone()
                },
                "too long",
            ),
            (
                "unknown symbol",
                pb::OrderRequest {
                    symbol: "DOGEUSDT".into(),
                    ..base.clone()
                },
                "configured: BTCUSDT, ETHUSDT",
            ),
            (
                "huge symbol",
                pb::OrderRequest {
                    symbol: "X".repeat(100_000),
                    ..base.clone()
                },
                "bytes)",
            ),
            (
                "no side",
                pb::OrderRequest {
                    side: 0,
                    ..base.clone()
                },
                "side: required",
            ),
            (
                "side out of range",
                pb::OrderRequest {
                    side: 9,
                    ..base.clone()
                },
                "side",
            ),
            (
                "no type",
                pb::OrderRequest {
                    r#type: 0,
                    ..base.clone()
                },
                "type: required",
            ),
            (
                "tif out of range",
                pb::OrderRequest {
                    time_in_force: -3,
                    ..base.clone()
                },
                "time_in_force",
            ),
            (
                "zero qty",
                pb::OrderRequest {
                    qty: "0".into(),
                    ..base.clone()
                },
                "qty: must be > 0",
            ),
            (
                "negative qty",
                pb::OrderRequest {
                    qty: "-1".into(),
                    ..base.clone()
                },
                "qty: must be > 0",
            ),
            (
                "NaN qty",
                pb::OrderRequest {
                    qty: "NaN".into(),
                    ..base.clone()
                },
                "qty: \"NaN\" is not a plain decimal",
            ),
            (
                "exponent qty",
                pb::OrderRequest {
                    qty: "1e-3".into(),
                    ..base.clone()
                },
                "qty",
            ),
            (
                "9 decimals",
                pb::OrderRequest {
                    qty: "0.000000001".into(),
                    ..base.clone()
                },
                "more than 8 decimals",
            ),
            (
                "off lot",
                pb::OrderRequest {
                    qty: "0.000001".into(),
                    ..base.clone()
                },
                "lot size 0.00001",
            ),
            (
                "empty qty",
                pb::OrderRequest {
                    qty: String::new(),
                    ..base.clone()
                },
                "qty: required",
            ),
            (
                "long qty",
                pb::OrderRequest {
                    qty: "1".repeat(1000),
                    ..base.clone()
                },
                "too long",
            ),
            (
                "overflowing qty",
                pb::OrderRequest {
                    qty: "99999999999999".into(),
                    ..base.clone()
                },
                "too large",
            ),
            (
                "limit without price",
                pb::OrderRequest {
                    price: String::new(),
                    ..base.clone()
                },
                "price: required",
            ),
            (
                "market with price",
                pb::OrderRequest {
                    price: "61000".into(),
                    ..market_buy("bad-1", "0.001")
                },
                "price: must be empty",
            ),
            (
                "off tick",
                pb::OrderRequest {
                    price: "61000.005".into(),
                    ..base.clone()
                },
                "tick size 0.01",
            ),
            (
                "zero price",
                pb::OrderRequest {
                    price: "0".into(),
                    ..base.clone()
                },
                "price: must be > 0",
            ),
            (
                "market GTC",
                pb::OrderRequest {
                    time_in_force: pb::TimeInForce::Gtc as i32,
                    ..market_buy("bad-1", "0.001")
                },
                "GTC is not allowed",
            ),
            (
                "market FOK",
                pb::OrderRequest {
                    time_in_force: pb::TimeInForce::Fok as i32,
                    ..market_buy("bad-1", "0.001")
                },
                "FOK is for limit orders",
            ),
            (
                "maker IOC",
                pb::OrderRequest {
                    r#type: pb::OrderType::LimitMaker as i32,
                    time_in_force: pb::TimeInForce::Ioc as i32,
                    ..base.clone()
                },
                "IOC and FOK are not allowed",
            ),
            (
                "unknown venue",
                pb::OrderRequest {
                    venue: "nasdaq".into(),
                    ..base.clone()
                },
                "unknown venue",
            ),
            (
                "venue not listing it",
                pb::OrderRequest {
                    venue: "coinbase".into(),
                    ..base.clone()
                },
                "coinbase does not list BTCUSDT",
            ),
            (
                "venue in capitals",
                pb::OrderRequest {
                    venue: "BINANCE".into(),
                    ..base.clone()
                },
                "unknown venue",
            ),
        ];
        for (what, request, needle) in cases {
            let err = r.desk.submit(&request).await.expect_err(what);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err}");
            assert!(
                err.message().contains(needle),
                "{what}: {:?} lacks {needle:?}",
                err.message()
            );
            assert!(
                err.message().len() < 400,
                "{what}: message too long: {}",
                err.message().len()
            );
        }
        assert!(r.manual.is_empty(), "nothing reached Risk");
        // The id of a refused request is still free.
        assert!(r.desk.book().keys.is_empty());
    }

    #[tokio::test]
    async fn a_resting_limit_is_accepted_once_and_replayed_for_the_same_request() {
        let mut r = rig();
        let request = limit_buy("rest-1", "0.0010", "61000.00");
        let desk = Arc::clone(&r.desk);
        let req = request.clone();
        let first = tokio::spawn(async move { desk.submit(&req).await });
        let intent = next_intent(&r.manual).await;
        assert_eq!(intent.origin, Origin::Manual);
        assert_eq!(intent.client_id, 1);
        assert_eq!(intent.sizing, Sizing::Delta(Side::Buy, "0.001".parse().unwrap()));
        assert_eq!(intent.limit, Some("61000".parse().unwrap()));
        assert_eq!(
            (intent.tif, intent.venue, intent.pin_venue),
            (Tif::Gtc, Venue::Binance, false)
        );
        assert_eq!(intent.touch.ask.to_string(), "61837.64", "the latest touch rides along");
        assert_eq!(intent.stop, Price::ZERO);
        let order = approved(&intent, 41);
        pass(&mut r.feed, &[Record::Order(order)]);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!first.is_finished(), "an order sent is not yet decisive");
        pass(
            &mut r.feed,
            &[Record::Report(ExecReport::Ack {
                order_id: order.id,
                venue_order_id: 7,
            })],
        );
        let ack = first.await.unwrap().unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Accepted as i32, "{ack:?}");
        assert_eq!(
            (ack.order_id, ack.venue.as_str(), ack.venue_order_id.as_str()),
            (41, "binance", "7")
        );
        assert_eq!(
            (ack.filled_qty.as_str(), ack.avg_price.as_str(), ack.symbol.as_str()),
            ("0", "", "BTCUSDT")
        );

        // The same contents, written differently: the same ack, no second order.
        let again = r.desk.submit(&limit_buy("rest-1", "0.001", "61000")).await.unwrap();
        assert_eq!(again, ack);
        assert!(r.manual.is_empty());
        // Different contents: ALREADY_EXISTS.
        let err = r.desk.submit(&limit_buy("rest-1", "0.002", "61000")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
        assert!(
            err.message().contains("ORDER_TYPE_LIMIT buy 0.001 BTCUSDT at 61000"),
            "{err}"
        );
        let pinned = pb::OrderRequest {
            venue: "binance".into(),
            ..limit_buy("rest-1", "0.001", "61000")
        };
        assert_eq!(
            r.desk.submit(&pinned).await.unwrap_err().code(),
            tonic::Code::AlreadyExists
        );
        assert!(r.manual.is_empty());

        // Cancel by client id; a second cancel is FAILED_PRECONDITION, unknown ones NOT_FOUND.
        let desk = Arc::clone(&r.desk);
        let cancel = tokio::spawn(async move {
            desk.cancel(&pb::CancelRequest {
                target: Some(Target::ClientOrderId("rest-1".into())),
            })
            .await
        });
        assert_eq!(next_cancel(&r.exec_cmd).await, order.id);
        // A cancel by engine id while the first is in flight joins it.
        let desk = Arc::clone(&r.desk);
        let joined = tokio::spawn(async move {
            desk.cancel(&pb::CancelRequest {
                target: Some(Target::OrderId(41)),
            })
            .await
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(r.exec_cmd.is_empty(), "no second cancel command");
        pass(
            &mut r.feed,
            &[Record::Report(ExecReport::Cancelled {
                order_id: order.id,
                instrument: BTC,
                side: Side::Buy,
                qty: "0.001".parse().unwrap(),
            })],
        );
        for c in [cancel.await.unwrap().unwrap(), joined.await.unwrap().unwrap()] {
            assert!(c.cancelled, "{c:?}");
            assert_eq!(
                (c.order_id, c.client_order_id.as_str(), c.cancelled_qty.as_str()),
                (41, "rest-1", "0.001")
            );
        }
        for target in [Target::ClientOrderId("rest-1".into()), Target::OrderId(41)] {
            let err = r
                .desk
                .cancel(&pb::CancelRequest { target: Some(target) })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
            assert!(err.message().contains("ORDER_STATUS_CANCELLED"), "{err}");
        }
        for target in [Target::ClientOrderId("never".into()), Target::OrderId(999)] {
            let err = r
                .desk
                .cancel(&pb::CancelRequest { target: Some(target) })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
        }
        for target in [
            None,
            Some(Target::OrderId(0)),
            Some(Target::ClientOrderId("no way!".into())),
        ] {
            let err = r.desk.cancel(&pb::CancelRequest { target }).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        }
        // The original ack stays the answer to the original request.
        assert_eq!(r.desk.submit(&request).await.unwrap(), ack);
        assert!(r.exec_cmd.is_empty() && r.manual.is_empty());
    }

    #[tokio::test]
    async fn risk_refusals_reject_and_halts_fail_the_precondition() {
        let mut r = rig();
        let desk = Arc::clone(&r.desk);
        let collared = tokio::spawn(async move { desk.submit(&limit_buy("far", "0.001", "1000")).await });
        let intent = next_intent(&r.manual).await;
        // An Alpha refusal with the same client id is not ours.
        let alpha = OrderIntent {
            origin: Origin::Alpha,
            ..intent
        };
        pass(
            &mut r.feed,
            &[Record::Refusal(Refusal {
                intent: alpha,
                reason: RejectReason::MaxPosition,
            })],
        );
        pass(
            &mut r.feed,
            &[Record::Refusal(Refusal {
                intent,
                reason: RejectReason::PriceCollar,
            })],
        );
        let ack = collared.await.unwrap().unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Rejected as i32);
        assert_eq!((ack.order_id, ack.reject_reason.as_str()), (0, "price_collar"));
        assert!(ack.message.contains("price_collar_pct"), "{ack:?}");

        for (id, reason) in [("halt", RejectReason::Halted), ("kill", RejectReason::KillSwitch)] {
            let desk = Arc::clone(&r.desk);
            let halted = tokio::spawn(async move { desk.submit(&market_buy(id, "0.001")).await });
            let intent = next_intent(&r.manual).await;
            pass(&mut r.feed, &[Record::Refusal(Refusal { intent, reason })]);
            let err = halted.await.unwrap().unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
            assert!(err.message().contains(reason.name()), "{err}");
            // Resubmitting is refused the same way, without a second intent.
            let again = r.desk.submit(&market_buy(id, "0.001")).await.unwrap_err();
            assert_eq!(again.code(), tonic::Code::FailedPrecondition);
            assert!(r.manual.is_empty());
        }

        // Execution's kill-switch reject of an approved order is a halt too.
        let desk = Arc::clone(&r.desk);
        let stopped = tokio::spawn(async move { desk.submit(&market_buy("late", "0.001")).await });
        let order = approved(&next_intent(&r.manual).await, 5);
        pass(
            &mut r.feed,
            &[
                Record::Order(order),
                Record::Report(ExecReport::Reject {
                    order_id: order.id,
                    instrument: BTC,
                    side: Side::Buy,
                    qty: order.qty,
                    reason: RejectReason::KillSwitch,
                }),
            ],
        );
        assert_eq!(
            stopped.await.unwrap().unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
    }

    #[tokio::test]
    async fn market_orders_answer_when_done_with_the_average_price() {
        let mut r = rig();
        let desk = Arc::clone(&r.desk);
        let market = tokio::spawn(async move { desk.submit(&market_buy("mkt", "0.003")).await });
        let intent = next_intent(&r.manual).await;
        assert_eq!((intent.limit, intent.tif), (None, Tif::Ioc));
        let order = approved(&intent, 9);
        pass(
            &mut r.feed,
            &[
                Record::Order(order),
                Record::Report(ExecReport::Ack {
                    order_id: order.id,
                    venue_order_id: 3,
                }),
                fill(&order, "0.001", "61837.64", false),
            ],
        );
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!market.is_finished(), "an IOC order is answered when done");
        pass(&mut r.feed, &[fill(&order, "0.002", "61837.65", true)]);
        let ack = market.await.unwrap().unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Filled as i32, "{ack:?}");
        assert_eq!(ack.filled_qty, "0.003");
        // (61837.64 + 2 × 61837.65) / 3 = 61837.646666…, rounded half up.
        assert_eq!(ack.avg_price, "61837.64666667");
        assert_eq!(ack.message, "filled 0.003 at 61837.64666667");

        // An IOC limit whose rest is cancelled: CANCELLED with what filled.
        let desk = Arc::clone(&r.desk);
        let ioc = pb::OrderRequest {
            time_in_force: pb::TimeInForce::Ioc as i32,
            ..limit_buy("ioc", "0.002", "61837.64")
        };
        let ioc_task = tokio::spawn(async move { desk.submit(&ioc).await });
        let order = approved(&next_intent(&r.manual).await, 10);
        pass(
            &mut r.feed,
            &[
                Record::Order(order),
                fill(&order, "0.001", "61837.64", false),
                Record::Report(ExecReport::Cancelled {
                    order_id: order.id,
                    instrument: BTC,
                    side: Side::Buy,
                    qty: "0.001".parse().unwrap(),
                }),
            ],
        );
        let ack = ioc_task.await.unwrap().unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Cancelled as i32, "{ack:?}");
        assert_eq!((ack.filled_qty.as_str(), ack.avg_price.as_str()), ("0.001", "61837.64"));
    }

    #[tokio::test]
    async fn no_decision_in_time_is_unknown_and_a_resubmission_waits_again() {
        let mut r = rig_with(16, REMEMBERED, Duration::from_millis(50));
        let request = pb::OrderRequest {
            venue: "bybit".into(),
            ..limit_buy("slow", "0.001", "61000")
        };
        let ack = r.desk.submit(&request).await.unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Unknown as i32);
        assert!(ack.message.contains("no decision within 50 ms"), "{ack:?}");
        let intent = r.manual.pop().expect("the order went in");
        assert_eq!((intent.venue, intent.pin_venue), (Venue::Bybit, true));
        assert_eq!(
            intent.touch.bid.to_string(),
            "61837.63",
            "another venue's touch when the venue has none"
        );
        // The venue's answer is lost: UNKNOWN from Execution is an answer, but not a final one.
        let order = approved(&intent, 3);
        pass(
            &mut r.feed,
            &[
                Record::Order(order),
                Record::Report(ExecReport::Unknown {
                    order_id: order.id,
                    instrument: BTC,
                    side: Side::Buy,
                    qty: order.qty,
                }),
            ],
        );
        let ack = r.desk.submit(&request).await.unwrap();
        assert_eq!((ack.status, ack.order_id), (pb::OrderStatus::Unknown as i32, 3));
        assert!(ack.message.contains("resolved by query"), "{ack:?}");
        pass(
            &mut r.feed,
            &[Record::Report(ExecReport::Ack {
                order_id: order.id,
                venue_order_id: 77,
            })],
        );
        let ack = r.desk.submit(&request).await.unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Accepted as i32, "{ack:?}");
        assert_eq!(ack.venue_order_id, "77");
        assert!(r.manual.is_empty(), "one order only");

        // A cancel nobody answers times out without an error.
        let slow = pb::CancelRequest {
            target: Some(Target::ClientOrderId("slow".into())),
        };
        let c = r.desk.cancel(&slow).await.unwrap();
        assert_eq!((c.cancelled, c.reason.as_str()), (false, "timeout"));
        assert_eq!(r.exec_cmd.pop(), Some(ExecCommand::Cancel(order.id)));
        // Execution refuses it later; the order is still open, so the next cancel goes out again.
        pass(
            &mut r.feed,
            &[Record::Report(ExecReport::CancelRejected {
                order_id: order.id,
                reason: RejectReason::VenueReject,
            })],
        );
        let c = r.desk.cancel(&slow).await.unwrap();
        assert_eq!((c.cancelled, c.reason.as_str()), (false, "timeout"));
        assert_eq!(r.exec_cmd.pop(), Some(ExecCommand::Cancel(order.id)));
        assert!(r.exec_cmd.is_empty());
    }

    #[tokio::test]
    async fn full_queues_are_unavailable_and_leave_nothing_behind() {
        let r = rig_with(1, REMEMBERED, Duration::from_millis(20));
        r.manual.push(intent_filler()).unwrap();
        let err = r.desk.submit(&limit_buy("q", "0.001", "61000")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(r.desk.book().keys.is_empty(), "a refused submission keeps no id");
        r.manual.pop();
        assert_eq!(
            r.desk.submit(&limit_buy("q", "0.001", "61000")).await.unwrap().status,
            pb::OrderStatus::Unknown as i32
        );

        // A cancel into a full Execution queue.
        let mut r = rig_with(1, REMEMBERED, Duration::from_millis(20));
        let desk = Arc::clone(&r.desk);
        let sub = tokio::spawn(async move { desk.submit(&limit_buy("c", "0.001", "61000")).await });
        let order = approved(&next_intent(&r.manual).await, 2);
        pass(
            &mut r.feed,
            &[
                Record::Order(order),
                Record::Report(ExecReport::Ack {
                    order_id: order.id,
                    venue_order_id: 1,
                }),
            ],
        );
        sub.await.unwrap().unwrap();
        r.exec_cmd.push(ExecCommand::Cancel(OrderId(99))).unwrap();
        let err = r
            .desk
            .cancel(&pb::CancelRequest {
                target: Some(Target::OrderId(2)),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(r.desk.book().cancels.is_empty());
    }

    fn intent_filler() -> OrderIntent {
        OrderIntent {
            instrument: BTC,
            venue: Venue::Binance,
            sizing: Sizing::Delta(Side::Buy, Qty::ZERO),
            limit: None,
            tif: Tif::Ioc,
            pin_venue: false,
            touch: Touch::default(),
            origin: Origin::Manual,
            client_id: 0,
            score: Factor::ZERO,
            mix: [Factor::ZERO; FAMILIES],
            stop: Price::ZERO,
            reduce_only: false,
            ts_ns: 0,
            stamp: Stamp(0),
        }
    }

    #[tokio::test]
    async fn the_table_is_bounded_forgetting_final_orders_first() {
        let mut r = rig_with(16, 2, Duration::from_millis(20));
        // Two working orders fill the desk.
        for (n, id) in [(1, "w1"), (2, "w2")] {
            let desk = Arc::clone(&r.desk);
            let task = tokio::spawn(async move { desk.submit(&limit_buy(id, "0.001", "61000")).await });
            let order = approved(&next_intent(&r.manual).await, n);
            pass(
                &mut r.feed,
                &[
                    Record::Order(order),
                    Record::Report(ExecReport::Ack {
                        order_id: order.id,
                        venue_order_id: n,
                    }),
                ],
            );
            assert_eq!(task.await.unwrap().unwrap().status, pb::OrderStatus::Accepted as i32);
        }
        let err = r.desk.submit(&limit_buy("w3", "0.001", "61000")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(r.manual.is_empty());
        // The second one is cancelled: it is the one forgotten, the older working one stays.
        pass(
            &mut r.feed,
            &[Record::Report(ExecReport::Cancelled {
                order_id: OrderId(2),
                instrument: BTC,
                side: Side::Buy,
                qty: "0.001".parse().unwrap(),
            })],
        );
        let ack = r.desk.submit(&limit_buy("w3", "0.001", "61000")).await.unwrap();
        assert_eq!(ack.status, pb::OrderStatus::Unknown as i32);
        let book = r.desk.book();
        assert!(book.keys.contains_key("w1") && book.keys.contains_key("w3") && !book.keys.contains_key("w2"));
        assert_eq!(book.entries.len(), 2);
        assert!(!book.orders.contains_key(&OrderId(2)));
    }

    #[tokio::test]
    async fn other_open_orders_can_be_cancelled_by_engine_id() {
        let mut r = rig();
        let alpha = Order {
            origin: Origin::Alpha,
            client_id: 0,
            ..approved(&intent_filler(), 70)
        };
        pass(&mut r.feed, &[Record::Order(alpha)]);
        // The venue refuses a cancel: the order is still open, the cancel says why.
        let desk = Arc::clone(&r.desk);
        let task = tokio::spawn(async move {
            desk.cancel(&pb::CancelRequest {
                target: Some(Target::OrderId(70)),
            })
            .await
        });
        assert_eq!(next_cancel(&r.exec_cmd).await, OrderId(70));
        pass(
            &mut r.feed,
            &[Record::Report(ExecReport::CancelRejected {
                order_id: alpha.id,
                reason: RejectReason::VenueReject,
            })],
        );
        let c = task.await.unwrap().unwrap();
        assert_eq!(
            (c.cancelled, c.reason.as_str(), c.client_order_id.as_str()),
            (false, "venue_reject", "")
        );
        assert!(c.message.contains("the venue refused"), "{c:?}");
        let desk = Arc::clone(&r.desk);
        let task = tokio::spawn(async move {
            desk.cancel(&pb::CancelRequest {
                target: Some(Target::OrderId(70)),
            })
            .await
        });
        assert_eq!(next_cancel(&r.exec_cmd).await, OrderId(70));
        // It filled before the cancel got there: the cancel is refused and the order is final.
        pass(
            &mut r.feed,
            &[
                fill(&alpha, "0.001", "61837.64", true),
                Record::Report(ExecReport::CancelRejected {
                    order_id: alpha.id,
                    reason: RejectReason::UnknownOrder,
                }),
            ],
        );
        assert_eq!(task.await.unwrap().unwrap_err().code(), tonic::Code::FailedPrecondition);
        let err = r
            .desk
            .cancel(&pb::CancelRequest {
                target: Some(Target::OrderId(70)),
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::NotFound,
            "a final order of someone else is forgotten"
        );
    }
}

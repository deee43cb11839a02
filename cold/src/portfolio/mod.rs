//! The Portfolio agent (cold side): positions, PnL, cash, equity, the intraday drawdown, the
//! PnL lock-box and payouts ([`Account`]; the accounting rules are in its module docs).
//!
//! # Where its data comes from
//! In `maxx run` the run loop hands every fill to [`Portfolio::on_fill`] as the drain takes it
//! from the hot path (with the id of its `fills` entry), marks with [`Portfolio::on_mark`], and
//! sweeps through [`Portfolio::plan_sweep`] / [`Portfolio::on_payout`]. The books therefore
//! follow the engine with no Redis round trip, and keep doing so while Redis is down.
//!
//! # Rebuild
//! With Redis, `start` rebuilds the account before it goes live: it reads `fills` and `payouts`
//! from the beginning with a plain `XREAD` reader (not a consumer group: a group remembers what
//! it delivered, but an account held in memory needs every fill again; this is why `fills`
//! retention is unbounded by default), then applies the fills the journal still holds for Redis
//! ([`Portfolio::with_journal`]), then the fills and payouts that arrived in-process meanwhile.
//! Every step is idempotent by entry id (and payouts by idempotency key), so whatever was
//! already applied is skipped: the account reaches exactly the state it had before the restart.
//! A rebuild that cannot reach Redis fails with [`AgentError::Retry`]: the
//! [`Supervisor`](crate::agent::Supervisor) backs off (CrashLoopBackoff) and tries again while
//! in-process fills wait. Entries that do not decode are counted (`skipped_garbage`) and logged
//! once each, never fatal. After the first rebuild the agent only waits for its stop: later
//! Redis outages do not touch it. Without Redis it starts empty and is live at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tracing::{info, warn};

use crate::agent::{Agent, AgentError, Health, StopSignal, names};
use crate::bus::connect::RedisEndpoint;
use crate::bus::consume::{ConsumeError, EntryId, FillRecord, RawEntry, ReadFrom, StreamReader, StreamRecord, decode};
use crate::config::Config;

mod account;
mod books;

pub use account::{Account, AccountConfig, AccountView, Payout, SweepPlan};
pub use books::{Books, PositionView, Snapshot, Totals};

/// The stream the Portfolio is built from.
pub const FILLS: &str = "fills";

/// Settings of a [`Portfolio`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortfolioOptions {
    /// Most entries per read (`COUNT`).
    pub batch: usize,
    /// How long the rebuild's last, empty read waits (`BLOCK`); above zero (`BLOCK 0` waits
    /// forever).
    pub block: Duration,
}

impl Default for PortfolioOptions {
    fn default() -> Self {
        Self {
            batch: 512,
            block: Duration::from_millis(50),
        }
    }
}

/// How often a pending read checks whether its connection failed.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// The stream of lock-box payouts.
pub const PAYOUTS: &str = "payouts";

/// Where the agent is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    NotStarted,
    Rebuilding,
    Live,
    Unreachable(String),
    Failed(String),
    Stopped,
}

/// Something that arrived in-process while the account was being rebuilt.
#[derive(Clone, Debug)]
enum Held {
    Fill(EntryId, FillRecord),
    Payout(Payout),
}

/// Most in-process events held during a rebuild; beyond it the oldest are dropped and counted
/// (the rebuild then finds them in Redis, where the publisher puts them).
const HELD_MAX: usize = 1 << 20;

/// The Portfolio agent. See the module docs.
#[derive(Debug)]
pub struct Portfolio {
    redis: Option<RedisEndpoint>,
    options: PortfolioOptions,
    config: AccountConfig,
    account: Mutex<Account>,
    /// `Some` until the first rebuild is done: in-process events wait here.
    held: Mutex<Option<Vec<Held>>>,
    held_dropped: AtomicU64,
    /// Fills and payouts the journal held for Redis at start, applied after the streams.
    journal: Mutex<Vec<Held>>,
    status: Mutex<Status>,
    rebuild_read: AtomicU64,
    /// The highest entry id already logged as skipped, per stream (`fills`, `payouts`).
    logged_through: Mutex<[EntryId; 2]>,
}

impl Portfolio {
    /// A Portfolio counting in `config`, rebuilt from the Redis at `redis` (what
    /// [`StreamReader::new`] takes) when given. Checks the address and options now; connects in
    /// `start`.
    pub fn new(
        redis: Option<RedisEndpoint>,
        config: AccountConfig,
        options: PortfolioOptions,
    ) -> Result<Self, ConsumeError> {
        if options.batch == 0 {
            return Err(ConsumeError::Invalid("portfolio batch must be at least 1".into()));
        }
        if options.block.is_zero() {
            return Err(ConsumeError::Invalid("portfolio block must be above zero".into()));
        }
        if let Some(r) = &redis {
            // Building a reader parses the address without connecting.
            StreamReader::new(r, FILLS, ReadFrom::End, options.batch, options.block)?;
        }
        let held = redis.as_ref().map(|_| Vec::new());
        Ok(Self {
            redis,
            options,
            account: Mutex::new(Account::new(config.clone())),
            config,
            held: Mutex::new(held),
            held_dropped: AtomicU64::new(0),
            journal: Mutex::new(Vec::new()),
            status: Mutex::new(Status::NotStarted),
            rebuild_read: AtomicU64::new(0),
            logged_through: Mutex::new([EntryId::default(); 2]),
        })
    }

    /// Adds the `fills` and `payouts` entries a journal still holds for Redis, to apply after
    /// the streams at the rebuild (entries of other streams and undecodable ones are left to
    /// the publisher, which reports them).
    pub fn with_journal<'a>(self, entries: impl IntoIterator<Item = &'a crate::bus::Entry>) -> Self {
        let mut held = Vec::new();
        for e in entries {
            let raw = RawEntry {
                id: e.id.clone(),
                fields: e
                    .fields
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            };
            match e.stream.as_str() {
                FILLS => {
                    if let Ok(entry) = decode(FILLS, &raw)
                        && let StreamRecord::Fill(f) = entry.record
                    {
                        held.push(Held::Fill(entry.id, f));
                    }
                }
                PAYOUTS => {
                    if let Ok(p) = decode_payout(&raw) {
                        held.push(Held::Payout(p));
                    }
                }
                _ => {}
            }
        }
        *lock(&self.journal) = held;
        self
    }

    /// A fill the engine made, with the id of its `fills` entry.
    pub fn on_fill(&self, id: EntryId, fill: &FillRecord) {
        if self.hold(Held::Fill(id, *fill)) {
            return;
        }
        lock(&self.account).apply_fill(id, fill);
    }

    /// The latest mark of `symbol`.
    pub fn on_mark(&self, symbol: maxx_hot::ids::Symbol, price: maxx_hot::num::Price) {
        lock(&self.account).mark(symbol, price);
    }

    /// Records performance equity now for the intraday drawdown; returns the account's
    /// (performance equity, trading capital) for Risk.
    pub fn observe(&self, now_ns: u64) -> (maxx_hot::num::Money, maxx_hot::num::Money) {
        let mut a = lock(&self.account);
        a.observe(now_ns);
        (a.performance_equity(), a.trading_capital())
    }

    /// What a sweep with `key` would do, or why it cannot be decided yet.
    pub fn plan_sweep(&self, key: &str) -> Result<SweepPlan, String> {
        if lock(&self.held).is_some() {
            return Err(format!(
                "the portfolio is still being rebuilt from Redis ({}); the lock-box is not known yet",
                self.health().detail
            ));
        }
        Ok(lock(&self.account).plan_sweep(key))
    }

    /// A payout the run loop has recorded on `payouts` (or would have, without Redis).
    pub fn on_payout(&self, payout: Payout) -> bool {
        if self.hold(Held::Payout(payout.clone())) {
            return true;
        }
        lock(&self.account).apply_payout(payout)
    }

    /// Holds `event` while the first rebuild is pending; `false` when live.
    fn hold(&self, event: Held) -> bool {
        let mut held = lock(&self.held);
        let Some(held) = held.as_mut() else { return false };
        if held.len() >= HELD_MAX {
            held.remove(0);
            self.held_dropped.fetch_add(1, Ordering::Relaxed);
        }
        held.push(event);
        true
    }

    /// The whole picture, for `GET /pnl`. During the first rebuild: what arrived in-process.
    pub fn view(&self) -> AccountView {
        lock(&self.account).view()
    }

    /// Calls `f` with the account.
    pub fn with_account<R>(&self, f: impl FnOnce(&Account) -> R) -> R {
        f(&lock(&self.account))
    }

    fn set_status(&self, status: Status) {
        *lock(&self.status) = status;
    }

    /// Every entry of `stream`, read from the start.
    async fn read_all(&self, redis: &RedisEndpoint, stream: &str) -> Result<Vec<RawEntry>, AgentError> {
        let mut reader = StreamReader::new(
            redis,
            stream,
            ReadFrom::After(EntryId::default()),
            self.options.batch,
            self.options.block,
        )
        .map_err(|e| {
            self.set_status(Status::Failed(e.to_string()));
            AgentError::Fatal(e.to_string())
        })?;
        let stats = reader.stats();
        let mut all = Vec::new();
        loop {
            let lost_before = stats.reconnects.load(Ordering::Relaxed);
            let lost = || stats.reconnects.load(Ordering::Relaxed) > lost_before;
            // The reader retries a lost or refused connection by itself, forever; the
            // supervisor's backoff is the retry here, so a failure ends the attempt.
            let mut check = tokio::time::interval(WATCH_EVERY);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let next = reader.next_batch();
            tokio::pin!(next);
            let result = loop {
                tokio::select! {
                    result = &mut next => break result,
                    _ = check.tick() => if lost() {
                        return Err(self.unreachable("cannot read from it"));
                    },
                }
            };
            let batch = match result {
                Ok(b) => b,
                Err(ConsumeError::Invalid(e)) => {
                    self.set_status(Status::Failed(e.clone()));
                    return Err(AgentError::Fatal(e));
                }
                Err(e) => return Err(self.unreachable(&e.to_string())),
            };
            if lost() {
                return Err(self.unreachable("the connection was lost while reading"));
            }
            let n = batch.len();
            self.rebuild_read.fetch_add(n as u64, Ordering::Relaxed);
            all.extend(batch);
            if n < self.options.batch {
                return Ok(all);
            }
        }
    }

    fn unreachable(&self, why: &str) -> AgentError {
        let detail = format!(
            "{}: {why}; rebuilding after a backoff",
            self.redis.as_ref().map(|r| r.redacted_url()).unwrap_or_default()
        );
        self.set_status(Status::Unreachable(detail.clone()));
        AgentError::Retry(format!("redis unreachable: {detail}"))
    }

    /// Applies `fills` entries in order; logs each skipped one once per process.
    fn apply_fills(&self, account: &mut Account, batch: &[RawEntry]) {
        for raw in batch {
            let problem = match decode(FILLS, raw) {
                Ok(entry) => match entry.record {
                    StreamRecord::Fill(fill) => {
                        let overflowed = account.books().skipped_overflow();
                        account.apply_fill(entry.id, &fill);
                        if account.books().skipped_overflow() != overflowed {
                            self.log_once(0, entry.id, "fill would overflow its book; skipped", raw);
                        }
                        continue;
                    }
                    // `decode` of `fills` only gives fills; kept total rather than panicking.
                    other => format!("not a fill: {other:?}"),
                },
                Err(e) => e.to_string(),
            };
            match raw.id.parse::<EntryId>() {
                Ok(id) => {
                    if account.books_mut().skip_garbage(id) {
                        self.log_once(0, id, &problem, raw);
                    }
                }
                // Redis never gives such an id; nothing can be counted idempotently.
                Err(e) => warn!(stream = FILLS, error = %e, "entry with an unreadable id; skipped"),
            }
        }
    }

    /// Applies `payouts` entries in order.
    fn apply_payouts(&self, account: &mut Account, batch: &[RawEntry]) {
        for raw in batch {
            match decode_payout(raw) {
                Ok(p) => {
                    account.apply_payout(p);
                }
                Err(problem) => {
                    let id = raw.id.parse().unwrap_or_default();
                    self.log_once(1, id, &problem, raw);
                }
            }
        }
    }

    fn log_once(&self, stream: usize, id: EntryId, problem: &str, raw: &RawEntry) {
        let mut through = lock(&self.logged_through);
        if id > through[stream] {
            through[stream] = id;
            let name = [FILLS, PAYOUTS][stream];
            warn!(stream = name, id = %id, error = %problem, entry = %raw, "entry skipped");
        }
    }
}

/// Decodes a `payouts` entry: `key`, `ts`, `amount` (> 0), `currency`, `idempotency_key`.
pub fn decode_payout(raw: &RawEntry) -> Result<Payout, String> {
    let id: EntryId = raw.id.parse().map_err(|e| format!("{e}"))?;
    let mut fields = std::collections::BTreeMap::new();
    for (k, v) in &raw.fields {
        let k = std::str::from_utf8(k).map_err(|_| "a field name is not UTF-8".to_string())?;
        let v = std::str::from_utf8(v).map_err(|_| format!("field `{k}` is not UTF-8"))?;
        if fields.insert(k, v).is_some() {
            return Err(format!("field `{k}` appears twice"));
        }
    }
    const SCHEMA: [&str; 5] = ["key", "ts", "amount", "currency", "idempotency_key"];
    if let Some(k) = fields.keys().find(|k| !SCHEMA.contains(k)) {
        return Err(format!("unknown field `{k}`"));
    }
    let get = |k: &str| fields.get(k).copied().ok_or_else(|| format!("field `{k}` is missing"));
    get("key")?;
    let ts: u64 = get("ts")?
        .parse()
        .map_err(|_| "field `ts` is not an integer".to_string())?;
    let amount: maxx_hot::num::Money = get("amount")?.parse().map_err(|e| format!("field `amount`: {e}"))?;
    if amount.raw() <= 0 {
        return Err("field `amount` must be above zero".into());
    }
    let currency = get("currency")?.to_string();
    let key = get("idempotency_key")?.to_string();
    if key.is_empty() {
        return Err("field `idempotency_key` is empty".into());
    }
    Ok(Payout {
        key,
        amount,
        currency,
        ts,
        id,
    })
}

/// Applies held events in order; each is skipped if already counted.
fn apply_held(account: &mut Account, events: Vec<Held>) {
    for event in events {
        match event {
            Held::Fill(id, fill) => {
                account.apply_fill(id, &fill);
            }
            Held::Payout(p) => {
                account.apply_payout(p);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every point a panic could unwind from.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent for Portfolio {
    fn name(&self) -> &str {
        names::PORTFOLIO
    }

    /// The first time with Redis: rebuilds the account (see the module docs).
    async fn start(&self) -> Result<(), AgentError> {
        let Some(redis) = self.redis.clone() else {
            self.set_status(Status::Live);
            return Ok(());
        };
        if lock(&self.held).is_none() {
            // Rebuilt before: the in-process account is current.
            self.set_status(Status::Live);
            return Ok(());
        }
        self.rebuild_read.store(0, Ordering::Relaxed);
        self.set_status(Status::Rebuilding);
        let fills = self.read_all(&redis, FILLS).await?;
        let payouts = self.read_all(&redis, PAYOUTS).await?;
        let mut fresh = Account::new(self.config.clone());
        self.apply_fills(&mut fresh, &fills);
        self.apply_payouts(&mut fresh, &payouts);
        let journal = std::mem::take(&mut *lock(&self.journal));
        let journaled = journal.len();
        apply_held(&mut fresh, journal);
        // Swap in and replay what arrived meanwhile, under the account's lock so that no
        // in-process event slips between the two.
        let mut account = lock(&self.account);
        let held = lock(&self.held).take().unwrap_or_default();
        // Marks that arrived meanwhile are current; keep them.
        let marks: Vec<_> = account.marks().collect();
        *account = fresh;
        for (symbol, price) in marks {
            account.mark(symbol, price);
        }
        apply_held(&mut account, held);
        info!(
            fills = account.books().applied(),
            payouts = account.payouts().len(),
            journal = journaled,
            skipped_garbage = account.books().skipped_garbage(),
            last_id = %account.books().last_id(),
            "portfolio rebuilt from fills and payouts"
        );
        drop(account);
        self.set_status(Status::Live);
        Ok(())
    }

    /// Nothing to do but wait: the account follows the run loop's calls.
    async fn run(&self, mut stop: StopSignal) -> Result<(), AgentError> {
        stop.stopped().await;
        Ok(())
    }

    async fn stop(&self) {
        let mut status = lock(&self.status);
        if matches!(*status, Status::Live | Status::Rebuilding) {
            *status = Status::Stopped;
        }
    }

    fn health(&self) -> Health {
        let status = lock(&self.status).clone();
        match status {
            Status::Live => {
                let a = lock(&self.account);
                Health::ok(format!(
                    "live: {} fills through {}, {} payouts, {} undecodable entries skipped",
                    a.books().applied(),
                    a.books().last_id(),
                    a.payouts().len(),
                    a.books().skipped_garbage()
                ))
            }
            Status::Rebuilding => Health::failing(format!(
                "rebuilding: {} entries read",
                self.rebuild_read.load(Ordering::Relaxed)
            )),
            Status::Unreachable(e) => Health::failing(format!("redis unreachable: {e}")),
            Status::Failed(e) => Health::failing(format!("failed: {e}")),
            Status::NotStarted => Health::failing("not started"),
            Status::Stopped => Health::failing("stopped"),
        }
    }

    /// The account currency and lock-box share apply from the next start.
    fn reload(&self, _config: &Config) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use maxx_hot::ids::{Symbol, Venue};
    use maxx_hot::records::{Liquidity, Side};

    use super::*;

    fn config() -> AccountConfig {
        AccountConfig {
            currency: "USDT".into(),
            starting: "1000".parse().unwrap(),
            lockbox_pct: "10".parse().unwrap(),
            quotes: Default::default(),
        }
    }

    fn raw(id: &str, fields: &[(&str, &str)]) -> RawEntry {
        RawEntry {
            id: id.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    const PAYOUT: [(&str, &str); 5] = [
        ("key", "019abc12-3456-7def-8123-456789abcdef"),
        ("ts", "5"),
        ("amount", "12.5"),
        ("currency", "USDT"),
        ("idempotency_key", "k1"),
    ];

    #[test]
    fn payout_entries_decode_strictly() {
        let p = decode_payout(&raw("9-1", &PAYOUT)).unwrap();
        assert_eq!(
            (p.key.as_str(), p.amount.to_string(), p.ts, p.id.to_string()),
            ("k1", "12.5".to_string(), 5, "9-1".to_string())
        );
        let but = |k: &str, v: Option<&'static str>| {
            let fields: Vec<(&str, &str)> = PAYOUT
                .iter()
                .filter_map(|&(f, x)| if f == k { v.map(|v| (f, v)) } else { Some((f, x)) })
                .collect();
            decode_payout(&raw("9-1", &fields)).unwrap_err()
        };
        assert!(but("amount", Some("-1")).contains("above zero"));
        assert!(but("amount", Some("abc")).contains("amount"));
        assert!(but("idempotency_key", None).contains("missing"));
        assert!(but("ts", Some("x")).contains("ts"));
        let mut extra = PAYOUT.to_vec();
        extra.push(("colour", "red"));
        assert!(
            decode_payout(&raw("9-1", &extra))
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(decode_payout(&raw("nine", &PAYOUT)).is_err());
    }

    #[tokio::test]
    async fn without_redis_the_agent_is_live_at_once_and_counts_in_process_fills() {
        let p = Portfolio::new(None, config(), PortfolioOptions::default()).unwrap();
        assert_eq!(p.health(), Health::failing("not started"));
        p.start().await.unwrap();
        assert!(p.health().ok);
        let fill = FillRecord {
            ts: 1,
            order_id: 1,
            price: "100".parse().unwrap(),
            fee: "0.1".parse().unwrap(),
            qty: "2".parse().unwrap(),
            side: Side::Buy,
            symbol: Symbol::new("BTCUSDT").unwrap(),
            venue: Venue::Binance,
            liquidity: Liquidity::Taker,
        };
        p.on_fill(EntryId { ms: 1, seq: 0 }, &fill);
        p.on_fill(EntryId { ms: 1, seq: 0 }, &fill);
        p.on_mark(fill.symbol, "101".parse().unwrap());
        let v = p.view();
        assert_eq!(v.fills_applied, 1);
        assert_eq!(v.equity.to_string(), "1001.9");
        assert_eq!(p.plan_sweep("k").unwrap(), SweepPlan::Empty);
    }

    #[test]
    fn bad_options_are_refused() {
        let zero_batch = PortfolioOptions {
            batch: 0,
            ..PortfolioOptions::default()
        };
        assert!(Portfolio::new(None, config(), zero_batch).is_err());
        let zero_block = PortfolioOptions {
            block: Duration::ZERO,
            ..PortfolioOptions::default()
        };
        assert!(Portfolio::new(None, config(), zero_block).is_err());
        let bad_url = Some(RedisEndpoint::new("http://nowhere"));
        assert!(Portfolio::new(bad_url, config(), PortfolioOptions::default()).is_err());
    }
}

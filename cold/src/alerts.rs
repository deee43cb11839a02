//! Feed health and alerts: the cold side watches the feeds' counters and raises alerts.
//!
//! [`FeedWatch`] turns the single-writer counters of each feed ([`FeedStats`]) into a health
//! view (connected / stale / reconnecting, last tick age, reconnects, gaps) and into alert
//! events: a feed drop, a stale feed, a refused subscription, a recovery. [`Alerter`] sends each
//! alert as a Slack-compatible webhook POST (`{"text": …, "channel": "#feed"}`) to
//! `alerts.webhook_url`, rate-limited per feed and kind, and always logs and counts it.
//! Everything here runs on the cold side; the feed threads only bump counters, so an alert can
//! never block or slow a feed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maxx_hot::feed::ws::TlsConfig;
use maxx_hot::ids::Venue;
use maxx_hot::records::{Scope, TradingState, Transition, TransitionReason};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::stage::exec::ExecNote;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

/// A feed's health, as `/healthz` and metrics show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Connected and ticks arriving.
    Connected,
    /// Connected, but no tick for longer than `stale_after`.
    Stale,
    /// Not connected; retrying with backoff.
    Reconnecting,
}

/// One feed's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeedHealth {
    /// Venue name.
    pub venue: &'static str,
    /// State.
    pub state: FeedState,
    /// Milliseconds since the last tick (`None` before the first).
    pub last_tick_age_ms: Option<u64>,
    /// Connections made (the first one included).
    pub connects: u64,
    /// Reconnects: connections lost, or restarted because the feed went stale.
    pub reconnects: u64,
    /// Sequence gaps detected.
    pub gaps: u64,
    /// Duplicates dropped (rotations).
    pub duplicates: u64,
}

/// What went wrong (or right again) with a feed or a venue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertKind {
    /// The connection dropped.
    Disconnected,
    /// No tick for `stale_after`: the feed was restarted.
    Stale,
    /// The venue refused a subscription.
    SubscribeRejected,
    /// Ticks flow again after a drop or staleness.
    Recovered,
    /// Sequence gaps: the venue's ids show missed messages.
    Gaps,
    /// Execution's router demoted the venue for its reject ratio: orders go elsewhere.
    VenueDemoted,
    /// The venue's probation is over: the router admits it again.
    VenueReadmitted,
    /// Intraday drawdown beyond `risk.daily_drawdown_pct`: trading HALTED, Kelly clip 0.25.
    DrawdownHalt,
    /// The kill switch tripped: HALTED, every open order cancelled.
    KillSwitch,
    /// An operator halted trading.
    Halted,
    /// Trading is ACTIVE again after a halt.
    Resumed,
}

impl AlertKind {
    /// Snake-case name for logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            AlertKind::Disconnected => "disconnected",
            AlertKind::Stale => "stale",
            AlertKind::SubscribeRejected => "subscribe_rejected",
            AlertKind::Recovered => "recovered",
            AlertKind::Gaps => "gaps",
            AlertKind::VenueDemoted => "venue_demoted",
            AlertKind::VenueReadmitted => "venue_readmitted",
            AlertKind::DrawdownHalt => "drawdown_halt",
            AlertKind::KillSwitch => "kill_switch",
            AlertKind::Halted => "halted",
            AlertKind::Resumed => "resumed",
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Which venue (its feed, or its order entry); `None` for the engine as a whole.
    pub venue: Option<Venue>,
    /// What happened.
    pub kind: AlertKind,
    /// Human-readable text (the webhook's `text`).
    pub text: String,
}

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    gaps: u64,
    disconnects: u64,
    stale_restarts: u64,
    subscribe_rejected: u64,
    trades_quotes: u64,
    down: bool,
}

/// The alert for one of Execution's notes: venue demotions and re-admissions are alerts; the
/// notes about single orders (reprices, passive timeouts) are not.
pub fn venue_alert(note: &ExecNote) -> Option<Alert> {
    match *note {
        ExecNote::Demoted {
            venue,
            rejects,
            window,
            until_ns,
            ts_ns,
        } => Some(Alert {
            venue: Some(venue),
            kind: AlertKind::VenueDemoted,
            text: format!(
                "{venue}: demoted by the order router, {rejects} rejects in its last {window} orders (above exec.reject_ratio_pct); orders go to other venues for {} s",
                until_ns.saturating_sub(ts_ns) / 1_000_000_000
            ),
        }),
        ExecNote::Readmitted { venue, .. } => Some(Alert {
            venue: Some(venue),
            kind: AlertKind::VenueReadmitted,
            text: format!("{venue}: probation over, the order router admits it again"),
        }),
        ExecNote::Repriced { .. } | ExecNote::PassiveTimeout { .. } => None,
    }
}

/// The alert for a trading-state transition of the whole engine: entering HALTED (drawdown,
/// kill switch, operator) and leaving it. Per-symbol states are not alerts: their causes (a
/// stale feed, a venue's rejects) are alerted where they are seen.
pub fn risk_alert(t: &Transition) -> Option<Alert> {
    if t.scope != Scope::System || t.from == t.to {
        return None;
    }
    let (kind, text) = match (t.to, t.reason) {
        (TradingState::Halted, TransitionReason::Drawdown) => (
            AlertKind::DrawdownHalt,
            "trading HALTED: intraday drawdown beyond risk.daily_drawdown_pct; Kelly clip 0.25 until an operator resumes".to_string(),
        ),
        (TradingState::Halted, TransitionReason::Kill) => (
            AlertKind::KillSwitch,
            "kill switch tripped: trading HALTED, every open order cancelled".to_string(),
        ),
        (TradingState::Halted, reason) => (
            AlertKind::Halted,
            format!("trading HALTED ({})", reason.name()),
        ),
        (to, reason) if t.from == TradingState::Halted => (
            AlertKind::Resumed,
            format!("trading {} again ({})", to.name(), reason.name()),
        ),
        _ => return None,
    };
    Some(Alert {
        venue: None,
        kind,
        text,
    })
}

/// Watches every feed's counters and reports changes as alerts.
#[derive(Debug)]
pub struct FeedWatch {
    feeds: Vec<Arc<FeedStats>>,
    seen: Vec<Seen>,
    stale_after: Duration,
}

impl FeedWatch {
    /// Watches these feeds; `stale_after` is `market_data.stale_after_ms`.
    pub fn new(feeds: Vec<Arc<FeedStats>>, stale_after: Duration) -> Self {
        let seen = vec![Seen::default(); feeds.len()];
        Self {
            feeds,
            seen,
            stale_after,
        }
    }

    /// Health of every feed now.
    pub fn health(&self) -> Vec<FeedHealth> {
        let now_ns = maxx_hot::clock::wall_ns();
        self.feeds
            .iter()
            .map(|f| {
                let last = f.last_tick_wall_ns.get();
                let age = (last != 0).then(|| now_ns.saturating_sub(last) / 1_000_000);
                let up = f.connects.get() > f.disconnects.get();
                let state = match (up, age) {
                    (false, _) => FeedState::Reconnecting,
                    (true, Some(ms)) if ms > self.stale_after.as_millis() as u64 => FeedState::Stale,
                    (true, _) => FeedState::Connected,
                };
                FeedHealth {
                    venue: f.venue.name(),
                    state,
                    last_tick_age_ms: age,
                    connects: f.connects.get(),
                    reconnects: f.disconnects.get() + f.stale_restarts.get(),
                    gaps: f.gaps.get(),
                    duplicates: f.duplicates.get(),
                }
            })
            .collect()
    }

    /// Alerts for everything that changed since the last call.
    pub fn check(&mut self) -> Vec<Alert> {
        let mut out = Vec::new();
        for (f, seen) in self.feeds.iter().zip(&mut self.seen) {
            let venue = f.venue;
            let now = Seen {
                gaps: f.gaps.get(),
                disconnects: f.disconnects.get(),
                stale_restarts: f.stale_restarts.get(),
                subscribe_rejected: f.subscribe_rejected.get(),
                trades_quotes: f.trades.get() + f.quotes.get(),
                down: seen.down,
            };
            let mut down = seen.down;
            if now.disconnects > seen.disconnects {
                down = true;
                out.push(Alert {
                    venue: Some(venue),
                    kind: AlertKind::Disconnected,
                    text: format!(
                        "feed {venue}: connection lost ({} drop(s) so far); reconnecting with backoff",
                        now.disconnects
                    ),
                });
            }
            if now.stale_restarts > seen.stale_restarts {
                down = true;
                out.push(Alert {
                    venue: Some(venue),
                    kind: AlertKind::Stale,
                    text: format!(
                        "feed {venue}: no tick for {} ms; connection restarted ({} time(s) so far)",
                        self.stale_after.as_millis(),
                        now.stale_restarts
                    ),
                });
            }
            if now.subscribe_rejected > seen.subscribe_rejected {
                out.push(Alert {
                    venue: Some(venue),
                    kind: AlertKind::SubscribeRejected,
                    text: format!("feed {venue}: the venue refused a subscription; check feeds.{venue} and symbols"),
                });
            }
            if now.gaps > seen.gaps {
                out.push(Alert {
                    venue: Some(venue),
                    kind: AlertKind::Gaps,
                    text: format!(
                        "feed {venue}: {} sequence gap(s) since the last check ({} in all): messages were missed",
                        now.gaps - seen.gaps,
                        now.gaps
                    ),
                });
            }
            let ticked = now.trades_quotes > seen.trades_quotes;
            if down && ticked && now.disconnects == seen.disconnects && now.stale_restarts == seen.stale_restarts {
                down = false;
                out.push(Alert {
                    venue: Some(venue),
                    kind: AlertKind::Recovered,
                    text: format!("feed {venue}: ticks flowing again"),
                });
            }
            *seen = Seen { down, ..now };
        }
        out
    }
}

/// Where alerts go: an `http://` or `https://` webhook (Slack's incoming webhooks are https).
#[derive(Clone, Debug)]
pub struct Webhook {
    host: String,
    port: u16,
    path: String,
    tls: Option<TlsConfig>,
}

impl Webhook {
    /// Parses a webhook URL; `https://` trusts the Mozilla roots (see [`Webhook::with_tls`]).
    pub fn parse(url: &str) -> Result<Webhook, String> {
        let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, None, 80)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, Some(TlsConfig::webpki_roots()), 443)
        } else {
            return Err(format!("{url}: expected an http:// or https:// URL"));
        };
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, default_port),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Webhook {
            host: host.to_string(),
            port,
            path: path.to_string(),
            tls,
        })
    }

    /// Uses these TLS settings for an `https://` webhook (a private CA, a test certificate).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        if self.tls.is_some() {
            self.tls = Some(tls);
        }
        self
    }

    fn request(&self, text: &str) -> String {
        let body = serde_json::json!({ "text": text, "channel": "#feed" }).to_string();
        format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.path,
            self.host,
            self.port,
            body.len(),
            body
        )
    }

    /// POSTs a Slack-compatible JSON body (`{"text": …, "channel": "#feed"}`); returns the HTTP
    /// status.
    pub async fn post(&self, text: &str) -> std::io::Result<u16> {
        let request = self.request(text);
        let head = match &self.tls {
            None => {
                let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
                stream.write_all(request.as_bytes()).await?;
                let mut head = [0u8; 64];
                let n = stream.read(&mut head).await?;
                head[..n].to_vec()
            }
            Some(tls) => {
                // rustls is synchronous here: run the short exchange on the blocking pool.
                let (host, port, tls) = (self.host.clone(), self.port, tls.clone());
                tokio::task::spawn_blocking(move || post_tls(&host, port, &tls, request.as_bytes()))
                    .await
                    .map_err(std::io::Error::other)??
            }
        };
        std::str::from_utf8(&head)
            .ok()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line"))
    }
}

/// Sends `request` over TLS and returns the first bytes of the response.
fn post_tls(host: &str, port: u16, tls: &TlsConfig, request: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::clone(&tls.0), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream.write_all(request)?;
    stream.flush()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    Ok(head[..n].to_vec())
}

/// Counters of the alert path.
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Alerts raised (logged), all kinds.
    pub raised: AtomicU64,
    /// Webhook POSTs answered with a 2xx status.
    pub delivered: AtomicU64,
    /// Webhook POSTs that failed (connect, I/O, non-2xx).
    pub failed: AtomicU64,
    /// Alerts not posted because of the rate limit (still logged and counted).
    pub suppressed: AtomicU64,
}

/// Logs, counts and (rate-limited) posts alerts.
#[derive(Debug)]
pub struct Alerter {
    webhook: Option<Webhook>,
    every: Duration,
    last: BTreeMap<(Option<Venue>, AlertKind), Instant>,
    /// Counters.
    pub stats: Arc<AlertStats>,
}

impl Alerter {
    /// An alerter posting to `webhook` (if any) at most once per `every` per feed and kind.
    pub fn new(webhook: Option<Webhook>, every: Duration) -> Self {
        Self {
            webhook,
            every,
            last: BTreeMap::new(),
            stats: Arc::default(),
        }
    }

    /// Posts to `webhook` from now on (`None`: log and count only). The rate limit's memory
    /// stays, so a new destination does not get a burst of what was just sent to the old one.
    pub fn set_webhook(&mut self, webhook: Option<Webhook>) {
        self.webhook = webhook;
    }

    /// The webhook alerts are posted to, if any.
    pub fn webhook(&self) -> Option<&Webhook> {
        self.webhook.as_ref()
    }

    /// Follows `alerts.webhook_url` after a config reload: a new URL replaces the webhook
    /// (logged with its host only: a Slack webhook's path is a secret), an unchanged one
    /// changes nothing. A URL that does not parse (validation makes that unexpected) keeps
    /// the current webhook and logs why.
    pub fn follow(&mut self, alerts: &crate::config::AlertsConfig) {
        let next = match alerts.webhook_url.as_deref().map(Webhook::parse).transpose() {
            Ok(next) => next,
            Err(e) => {
                // The reason only: the URL itself may carry a secret.
                let why = e.rsplit(": ").next().unwrap_or("invalid URL");
                warn!(error = why, "alerts.webhook_url not applied; the current webhook stays");
                return;
            }
        };
        let target = |w: Option<&Webhook>| w.map(|w| (w.host.clone(), w.port, w.path.clone(), w.tls.is_some()));
        if target(next.as_ref()) == target(self.webhook.as_ref()) {
            return;
        }
        match &next {
            Some(w) => info!(host = %w.host, port = w.port, "alerts now go to a new webhook"),
            None => info!("alerts webhook removed: alerts are logged and counted only"),
        }
        self.set_webhook(next);
    }

    /// Raises one alert: logs it, counts it, and posts it from a separate task unless the rate
    /// limit holds it back. Never waits for the webhook.
    pub fn raise(&mut self, alert: Alert) {
        self.stats.raised.fetch_add(1, Ordering::Relaxed);
        warn!(
            venue = alert.venue.map_or("*", Venue::name),
            alert = alert.kind.name(),
            "{}",
            alert.text
        );
        let Some(hook) = self.webhook.clone() else { return };
        let now = Instant::now();
        let key = (alert.venue, alert.kind);
        if self.last.get(&key).is_some_and(|t| now.duration_since(*t) < self.every) {
            self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.last.insert(key, now);
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(Duration::from_secs(5), hook.post(&alert.text)).await;
            match outcome {
                Ok(Ok(status)) if (200..300).contains(&status) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                other => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(alert = alert.kind.name(), outcome = ?other.map(|r| r.map_err(|e| e.to_string())), "alert webhook failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_halts_and_resumes_are_alerts_symbol_states_are_not() {
        let t = |scope, from, to, reason| Transition {
            scope,
            from,
            to,
            reason,
            ts_ns: 1,
        };
        use TradingState::*;
        let kinds: Vec<_> = [
            t(Scope::System, Active, Halted, TransitionReason::Drawdown),
            t(Scope::System, Active, Halted, TransitionReason::Kill),
            t(Scope::System, Reducing, Halted, TransitionReason::Operator),
            t(Scope::System, Halted, Active, TransitionReason::Operator),
        ]
        .iter()
        .map(|t| risk_alert(t).map(|a| (a.venue, a.kind)))
        .collect();
        assert_eq!(
            kinds,
            [
                Some((None, AlertKind::DrawdownHalt)),
                Some((None, AlertKind::KillSwitch)),
                Some((None, AlertKind::Halted)),
                Some((None, AlertKind::Resumed)),
            ]
        );
        let symbol = Scope::Instrument(maxx_hot::ids::InstrumentId(0));
        assert_eq!(risk_alert(&t(symbol, Active, Halted, TransitionReason::Operator)), None);
        assert_eq!(
            risk_alert(&t(Scope::System, Active, Reducing, TransitionReason::Operator)),
            None
        );
        assert!(
            risk_alert(&t(Scope::System, Active, Halted, TransitionReason::Drawdown))
                .unwrap()
                .text
                .contains("daily_drawdown_pct")
        );
    }

    #[test]
    fn venue_demotions_and_readmissions_are_alerts_order_notes_are_not() {
        let demoted = ExecNote::Demoted {
            venue: Venue::Bybit,
            rejects: 2,
            window: 50,
            until_ns: 61_000_000_000,
            ts_ns: 1_000_000_000,
        };
        let a = venue_alert(&demoted).unwrap();
        assert_eq!((a.venue, a.kind), (Some(Venue::Bybit), AlertKind::VenueDemoted));
        assert_eq!(
            a.text,
            "bybit: demoted by the order router, 2 rejects in its last 50 orders (above exec.reject_ratio_pct); orders go to other venues for 60 s"
        );
        let back = venue_alert(&ExecNote::Readmitted {
            venue: Venue::Bybit,
            ts_ns: 61_000_000_000,
        })
        .unwrap();
        assert_eq!((back.kind.name(), back.venue), ("venue_readmitted", Some(Venue::Bybit)));
        let timeout = ExecNote::PassiveTimeout {
            order_id: maxx_hot::records::OrderId(3),
            venue: Venue::Bybit,
            take: true,
            ts_ns: 0,
        };
        assert_eq!(venue_alert(&timeout), None);
    }

    #[test]
    fn a_reloaded_webhook_url_replaces_the_webhook() {
        let config = |url: Option<&str>| crate::config::AlertsConfig {
            webhook_url: url.map(str::to_string),
        };
        let mut a = Alerter::new(None, Duration::from_secs(60));
        a.follow(&config(Some("http://127.0.0.1:9000/hooks/a")));
        assert_eq!(a.webhook().map(|w| w.path.as_str()), Some("/hooks/a"));
        a.follow(&config(Some("http://127.0.0.1:9001/hooks/b")));
        assert_eq!(a.webhook().map(|w| (w.port, w.path.as_str())), Some((9001, "/hooks/b")));
        a.follow(&config(Some("ftp://nowhere/")));
        assert_eq!(a.webhook().map(|w| w.port), Some(9001), "a bad URL keeps the webhook");
        a.follow(&config(None));
        assert!(a.webhook().is_none());
    }

    #[test]
    fn webhook_urls() {
        let w = Webhook::parse("http://127.0.0.1:9000/hooks/feed").unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str(), w.tls.is_none()),
            ("127.0.0.1", 9000, "/hooks/feed", true)
        );
        assert_eq!(Webhook::parse("http://alerts.local").unwrap().port, 80);
        let s = Webhook::parse("https://hooks.slack.com/services/T/B/X").unwrap();
        assert_eq!((s.port, s.tls.is_some()), (443, true));
        assert!(Webhook::parse("ftp://x/").is_err());
        assert!(Webhook::parse("http://:80/").is_err());
    }

    #[tokio::test]
    async fn https_webhooks_post_through_tls() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let server = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (tcp, _) = listener.accept().unwrap();
            let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(server).unwrap(), tcp);
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !String::from_utf8_lossy(&seen).contains("#feed") {
                let n = tls.read(&mut buf).unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
            tls.flush().unwrap();
            String::from_utf8(seen).unwrap()
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let hook = Webhook::parse(&format!("https://localhost:{port}/hooks/feed"))
            .unwrap()
            .with_tls(TlsConfig::with_roots(roots));
        assert_eq!(hook.post("feed binance: test").await.unwrap(), 200);
        let request = got.join().unwrap();
        assert!(request.starts_with("POST /hooks/feed HTTP/1.1"), "{request}");
        assert!(
            request.contains(r##"{"text":"feed binance: test","channel":"#feed"}"##),
            "{request}"
        );
    }

    #[test]
    fn watch_reports_drops_staleness_and_recovery_once() {
        let f = Arc::new(FeedStats::new(Venue::Binance));
        let mut w = FeedWatch::new(vec![Arc::clone(&f)], Duration::from_secs(5));
        f.connects.inc();
        f.trades.inc();
        assert!(w.check().is_empty());
        f.disconnects.inc();
        let a = w.check();
        assert_eq!(a.iter().map(|a| a.kind).collect::<Vec<_>>(), [AlertKind::Disconnected]);
        assert!(w.check().is_empty(), "reported once");
        f.connects.inc();
        f.quotes.inc();
        assert_eq!(
            w.check().iter().map(|a| a.kind).collect::<Vec<_>>(),
            [AlertKind::Recovered]
        );
        f.stale_restarts.inc();
        f.subscribe_rejected.inc();
        f.gaps.add(3);
        let alerts = w.check();
        let kinds: Vec<_> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [AlertKind::Stale, AlertKind::SubscribeRejected, AlertKind::Gaps]);
        assert!(alerts[2].text.contains("3 sequence gap(s)"));
        assert_eq!(w.health()[0].reconnects, 2);
    }
}

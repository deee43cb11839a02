//! `SubmitOrder` round trip over gRPC, against a bare tonic echo service measured in the same run.
//!
//! - **maxx**: a real `maxx run` child (simulated Binance feed, paper venue) with the
//!   ExecutionService on loopback. Each call is a market IOC order of one lot-multiple that
//!   passes the desk's validation, the RiskSentinel gate, Execution's router and the paper
//!   venue, and returns when the desk has the first decisive record (the venue's ack or fill).
//!   Buys and sells alternate, so the position stays flat and no limit is reached.
//! - **echo**: a bare tonic ExecutionService that answers every `SubmitOrder` with an ack built
//!   from the request, in a process of its own (this binary, re-run with `--echo-server`) on a
//!   current-thread runtime as `maxx run`'s cold side is: the cost of a gRPC server process —
//!   the transport, HTTP/2, protobuf and waking the server — and nothing else. The ratio
//!   maxx / echo is the figure to quote.
//! - **echo-in**: the same service on the client's own thread in this process. No process is
//!   woken (client and server take turns on one thread), so it is faster than any server a
//!   client can reach; shown for reference.
//!
//! All are driven by the same client code, one call at a time (closed loop), in alternating
//! blocks so machine noise falls on each alike. Latencies go into HdrHistograms; the report is
//! a percentile table per target and the ratios per percentile. Absolute numbers are
//! machine-specific; the ratios are the figures to quote.
//!
//! Run with `cargo bench --bench submit_order` (`SUBMIT_ORDER_CALLS=N` per target, default
//! 5000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Running, TOKEN, TempDir, config_with};
use hdrhistogram::Histogram;
use maxx_cold::grpc::pb;
use pb::execution_service_client::ExecutionServiceClient;
use pb::execution_service_server::{ExecutionService, ExecutionServiceServer};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// Calls per target before measuring.
const WARMUP: usize = 500;
/// Calls per target per block; blocks alternate between the targets.
const BLOCK: usize = 250;

/// The bare service: an ack from the request, nothing else.
#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl ExecutionService for Echo {
    async fn submit_order(&self, request: Request<pb::OrderRequest>) -> Result<Response<pb::OrderAck>, Status> {
        let r = request.into_inner();
        Ok(Response::new(pb::OrderAck {
            client_order_id: r.client_order_id,
            order_id: 1,
            status: pb::OrderStatus::Filled as i32,
            venue: "binance".into(),
            venue_order_id: "1".into(),
            filled_qty: r.qty,
            symbol: r.symbol,
            ..Default::default()
        }))
    }

    async fn cancel_order(&self, _: Request<pb::CancelRequest>) -> Result<Response<pb::CancelAck>, Status> {
        Err(Status::not_found("echo keeps no orders"))
    }
}

/// One target's client and counters.
struct Target {
    name: &'static str,
    client: ExecutionServiceClient<Channel>,
    histogram: Histogram<u64>,
    sent: u64,
    /// Net quantity bought, in lots of 10^-8 (from the acks' filled quantities).
    position: i64,
}

impl Target {
    async fn call(&mut self, record: bool) {
        self.sent += 1;
        // Always towards flat, so partial fills cannot walk the position into a limit.
        let side = if self.position > 0 {
            pb::Side::Sell
        } else {
            pb::Side::Buy
        };
        let mut request = Request::new(pb::OrderRequest {
            client_order_id: format!("bench-{}", self.sent),
            symbol: "BTCUSDT".into(),
            side: side as i32,
            qty: "0.001".into(),
            price: String::new(),
            r#type: pb::OrderType::Market as i32,
            time_in_force: pb::TimeInForce::Ioc as i32,
            venue: String::new(),
        });
        let bearer = format!("Bearer {TOKEN}").parse().expect("ascii metadata");
        request.metadata_mut().insert("authorization", bearer);
        let start = Instant::now();
        let ack = self.client.submit_order(request).await;
        let ns = start.elapsed().as_nanos() as u64;
        let ack = ack.unwrap_or_else(|s| panic!("{}: SubmitOrder failed: {s}", self.name));
        let status = pb::OrderStatus::try_from(ack.get_ref().status).unwrap_or(pb::OrderStatus::Unspecified);
        assert!(
            matches!(
                status,
                pb::OrderStatus::Filled | pb::OrderStatus::PartiallyFilled | pb::OrderStatus::Cancelled
            ) && !ack.get_ref().filled_qty.is_empty(),
            "{}: order {} was not taken: {:?}",
            self.name,
            self.sent,
            ack.get_ref()
        );
        let filled = lots(&ack.get_ref().filled_qty);
        self.position += if side == pb::Side::Buy { filled } else { -filled };
        if record {
            self.histogram.saturating_record(ns.max(1));
        }
    }
}

/// A decimal quantity string in units of 10^-8.
fn lots(qty: &str) -> i64 {
    let (whole, frac) = qty.split_once('.').unwrap_or((qty, ""));
    let frac = format!("{frac:0<8}");
    whole.parse::<i64>().unwrap_or(0) * 100_000_000 + frac[..8].parse::<i64>().unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1_000.0)
}

/// `--echo-server`: serve the echo on a free loopback port, print it, and stop when stdin
/// closes (the bench died; at its end the bench kills it).
fn echo_server() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("local addr"));
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        });
        Server::builder()
            .add_service(ExecutionServiceServer::new(Echo))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
                let _ = stdin_closed.await;
            })
            .await
            .expect("echo server");
    });
}

/// The echo server in a child process, and its address.
fn spawn_echo_server() -> (std::process::Child, String) {
    let mut child = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .arg("--echo-server")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped stdout")),
        &mut line,
    )
    .expect("echo server address");
    (child, line.trim().to_string())
}

fn main() {
    if std::env::args().any(|a| a == "--echo-server") {
        return echo_server();
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let calls: usize = if smoke {
        2 * BLOCK
    } else {
        std::env::var("SUBMIT_ORDER_CALLS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5_000)
    };
    let dir = TempDir::new("bench-submit");
    let config = dir.write(
        "bench.yaml",
        config_with(&[
            ("  max_orders_per_sec:", "  max_orders_per_sec: 100000"),
            // Alpha stays out of the way: no signal is strong enough to trade.
            ("  entry_threshold:", "  entry_threshold: 1.0"),
            // The paper venue answers at once: its modelled network latency (1 ms by default)
            // would otherwise be most of the round trip, and it is not the engine's cost.
            ("    latency_us:", "    latency_us: 0"),
        ]),
    );
    let run = Running::start(&config);
    let (mut echo_child, echo_proc_addr) = spawn_echo_server();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (maxx, echo, echo_in) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = listener.local_addr().expect("local addr");
        tokio::spawn(
            Server::builder()
                .add_service(ExecutionServiceServer::new(Echo))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
        );
        let connect = |addr: String| async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match ExecutionServiceClient::connect(format!("http://{addr}")).await {
                    Ok(c) => return c,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("cannot connect to {addr}: {e}"),
                }
            }
        };
        (
            connect(run.grpc.clone()).await,
            connect(echo_proc_addr.clone()).await,
            connect(echo_addr.to_string()).await,
        )
    });
    let mut targets = [
        Target {
            name: "maxx",
            client: maxx,
            histogram: histogram(),
            sent: 0,
            position: 0,
        },
        Target {
            name: "echo",
            client: echo,
            histogram: histogram(),
            sent: 0,
            position: 0,
        },
        Target {
            name: "echo-in",
            client: echo_in,
            histogram: histogram(),
            sent: 0,
            position: 0,
        },
    ];
    runtime.block_on(async {
        // The engine needs a price before a market order can pass Risk: retry the first call.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut probe = targets[0].client.clone();
            let mut request = Request::new(pb::OrderRequest {
                client_order_id: "bench-probe".into(),
                symbol: "BTCUSDT".into(),
                side: pb::Side::Buy as i32,
                qty: "0.001".into(),
                r#type: pb::OrderType::Market as i32,
                time_in_force: pb::TimeInForce::Ioc as i32,
                ..Default::default()
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().expect("ascii"));
            let _ = probe.submit_order(request).await;
            // The probe's id is spent; the next one sells it back.
            let mut sell = Request::new(pb::OrderRequest {
                client_order_id: format!("bench-probe-sell-{}", deadline.elapsed().as_nanos()),
                symbol: "BTCUSDT".into(),
                side: pb::Side::Sell as i32,
                qty: "0.001".into(),
                r#type: pb::OrderType::Market as i32,
                time_in_force: pb::TimeInForce::Ioc as i32,
                ..Default::default()
            });
            sell.metadata_mut()
                .insert("authorization", format!("Bearer {TOKEN}").parse().expect("ascii"));
            match probe.submit_order(sell).await {
                Ok(ack) if lots(&ack.get_ref().filled_qty) > 0 => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "the engine never filled a market order: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        for t in &mut targets {
            for _ in 0..WARMUP.min(calls) {
                t.call(false).await;
            }
        }
        let mut done = 0;
        while done < calls {
            let n = BLOCK.min(calls - done);
            for t in &mut targets {
                for _ in 0..n {
                    t.call(true).await;
                }
            }
            done += n;
        }
    });
    let stderr = run.stop();
    let _ = stderr;
    // Its clients are still connected, so a graceful stop would wait for them.
    let _ = echo_child.kill();
    let _ = echo_child.wait();
    println!("SubmitOrder round trip, {calls} calls per target, closed loop, one client");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "target", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "mean µs"
    );
    for t in &targets {
        let h = &t.histogram;
        println!(
            "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            t.name,
            micros(h.value_at_quantile(0.5)),
            micros(h.value_at_quantile(0.9)),
            micros(h.value_at_quantile(0.99)),
            micros(h.value_at_quantile(0.999)),
            micros(h.max()),
            micros(h.mean() as u64),
        );
    }
    let m = &targets[0].histogram;
    for base in &targets[1..] {
        let e = &base.histogram;
        let ratio = |q: f64| m.value_at_quantile(q) as f64 / e.value_at_quantile(q).max(1) as f64;
        println!(
            "ratio maxx/{:<8} p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}",
            format!("{}:", base.name),
            ratio(0.5),
            ratio(0.9),
            ratio(0.99),
            ratio(0.999)
        );
    }
    for t in &targets {
        assert_eq!(t.histogram.len() as usize, calls, "every {} call was measured", t.name);
    }
}

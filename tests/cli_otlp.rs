//! OpenTelemetry export over OTLP/gRPC, against a real local OTLP receiver: a tonic server of
//! the collector's `TraceService/Export` and `MetricsService/Export` on a free loopback port that
//! records every span (name, attributes, resource) and every metric name it is sent.
//!
//! - Library level: `Telemetry::start` pointed at the receiver, spans from `tracing` and from
//!   the HTTP layer on a real axum router, then `shutdown`: the receiver holds exactly the
//!   INFO spans with their names and attributes, and the request counter.
//! - End to end: `maxx run` with `telemetry.otlp_endpoint` set to the receiver; HTTP control
//!   calls (`GET /healthz`, `POST /reload` with and without the token) and gRPC calls
//!   (`RiskService/GetState`, a refused `Kill`) each arrive as a span named after the route or
//!   the method, with the status.
//! - Endpoint null: no export thread in the process and not a word about OpenTelemetry.
//! - Endpoint unreachable: the run serves and stops normally and says so once per signal.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{Running, TOKEN, TempDir, config_with};
use maxx_cold::grpc::pb::risk_service_client::RiskServiceClient;
use maxx_cold::grpc::pb::{GetStateRequest, KillRequest};
use maxx_cold::telemetry::{self, Telemetry};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as AnyValueMsg, KeyValue};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tracing_subscriber::layer::SubscriberExt as _;

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct SpanSeen {
    name: String,
    attrs: BTreeMap<String, String>,
    resource: BTreeMap<String, String>,
    events: Vec<String>,
}

impl SpanSeen {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Clone, Default)]
struct Seen {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

fn text(v: &Option<AnyValueMsg>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn map(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

#[tonic::async_trait]
impl TraceService for Seen {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = map(rs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(SpanSeen {
                        name: s.name.clone(),
                        attrs: map(&s.attributes),
                        resource: resource.clone(),
                        events: s.events.iter().map(|e| e.name.clone()).collect(),
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Seen {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut names = self.metrics.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                names.extend(sm.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

/// The local OTLP receiver: a tonic server on its own runtime, stopped when dropped.
struct Receiver {
    addr: SocketAddr,
    seen: Seen,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let seen = Seen::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let (traces, metrics) = (seen.clone(), seen.clone());
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(traces))
                .add_service(MetricsServiceServer::new(metrics))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
        });
        Receiver {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<SpanSeen> {
        self.seen.spans.lock().unwrap().clone()
    }

    fn metric_names(&self) -> Vec<String> {
        self.seen.metrics.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> Vec<SpanSeen> {
        self.spans().into_iter().filter(|s| s.name == name).collect()
    }
}

/// One HTTP/1.1 request over a fresh connection; returns the status code.
async fn http_status(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read response");
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[test]
fn library_spans_and_http_layer_reach_the_receiver_with_names_and_attributes() {
    let receiver = Receiver::start();
    let telemetry = Telemetry::start(Some(&receiver.endpoint()), "maxx-test", "lib-1").expect("start telemetry");
    assert!(telemetry.is_active());
    let subscriber = tracing_subscriber::registry().with(telemetry.layer());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The server runs on this thread (current-thread runtime), so the scoped subscriber sees
    // the spans the layer makes.
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("config.reload", otel.name = "config reload", outcome = "accepted").in_scope(|| {
            tracing::info!(changed = 2u64, "reload applied");
        });
        tracing::debug_span!("below the export level").in_scope(|| {});
        runtime.block_on(async {
            use axum::http::StatusCode;
            use axum::routing::get;
            let app = axum::Router::new()
                .route("/things/{id}", get(|| async { "ok" }))
                .route("/broken", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
                .layer(telemetry::http_layer());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            assert_eq!(http_status(addr, "/things/7").await, 200);
            assert_eq!(http_status(addr, "/things/8").await, 200);
            assert_eq!(http_status(addr, "/broken").await, 500);
        });
    });
    // Shutdown exports everything queued before it returns.
    telemetry.shutdown().expect("clean shutdown");

    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["GET /broken", "GET /things/{id}", "GET /things/{id}", "config reload"],
        "{spans:#?}"
    );
    let reload = &receiver.named("config reload")[0];
    assert_eq!(reload.attr("outcome"), "accepted");
    assert_eq!(
        reload.events,
        ["reload applied"],
        "the log line inside the span is its event"
    );
    assert_eq!(
        reload.resource.get("service.name").map(String::as_str),
        Some("maxx-test")
    );
    assert_eq!(
        reload.resource.get("service.instance.id").map(String::as_str),
        Some("lib-1")
    );
    let mut paths: Vec<&str> = Vec::new();
    let things = receiver.named("GET /things/{id}");
    for s in &things {
        assert_eq!(
            (
                s.attr("http.request.method"),
                s.attr("http.route"),
                s.attr("http.response.status_code")
            ),
            ("GET", "/things/{id}", "200"),
            "{s:#?}"
        );
        paths.push(s.attr("url.path"));
    }
    paths.sort_unstable();
    assert_eq!(paths, ["/things/7", "/things/8"]);
    let broken = &receiver.named("GET /broken")[0];
    assert_eq!(broken.attr("http.response.status_code"), "500", "{broken:#?}");
    let metrics = receiver.metric_names();
    for name in ["maxx.http.server.requests", "http.server.request.duration"] {
        assert!(metrics.iter().any(|m| m == name), "{name} not among {metrics:?}");
    }
}

fn config(endpoint: &str) -> String {
    config_with(&[
        ("  wait:", "  wait: park"),
        ("  otlp_endpoint:", &format!("  otlp_endpoint: {endpoint}")),
    ])
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

fn grpc_calls(run: &Running) -> Code {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let mut client = RiskServiceClient::connect(format!("http://{}", run.grpc))
            .await
            .unwrap_or_else(|e| panic!("connect to grpc://{}: {e}", run.grpc));
        client.get_state(GetStateRequest {}).await.expect("GetState");
        client
            .kill(KillRequest::default())
            .await
            .expect_err("Kill without a token is refused")
            .code()
    })
}

#[test]
fn maxx_run_exports_a_span_per_http_and_grpc_control_call() {
    let receiver = Receiver::start();
    let dir = TempDir::new("otlp-run");
    let path = dir.write("run.yaml", config(&format!("\"{}\"", receiver.endpoint())));
    let mut run = Running::start(&path);
    assert!(
        thread_names(run.child.id()).iter().any(|n| n == "otel-export"),
        "the export runtime runs: {:?}",
        thread_names(run.child.id())
    );

    run.poll("/healthz to answer", |r| match r.get("/healthz") {
        (200 | 503, _) => Ok(()),
        (s, v) => Err(format!("{s} {v}")),
    });
    let (status, body) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = run.post("/reload", None, "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = run.post("/govern/reweight", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = run.post("/sweep", Some(TOKEN), r#"{"idempotency_key":"k"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(grpc_calls(&run), Code::Unauthenticated);
    run.stop();

    let healthz = receiver.named("GET /healthz");
    assert!(!healthz.is_empty(), "{:#?}", receiver.spans());
    assert_eq!(healthz[0].attr("http.route"), "/healthz");
    assert_eq!(
        healthz[0].resource.get("service.name").map(String::as_str),
        Some("maxx")
    );
    let mut reload: Vec<&str> = Vec::new();
    let reloads = receiver.named("POST /reload");
    for s in &reloads {
        reload.push(s.attr("http.response.status_code"));
    }
    reload.sort_unstable();
    assert_eq!(reload, ["200", "401"], "{reloads:#?}");
    // The work behind the control calls has its own spans: one reload (the refused request
    // never reached it), one governor step, one sweep.
    for (name, count) in [("config reload", 1), ("governor reweight", 1), ("portfolio sweep", 1)] {
        assert_eq!(receiver.named(name).len(), count, "{name}: {:#?}", receiver.spans());
    }
    let get_state = receiver.named("maxx.v1.RiskService/GetState");
    assert_eq!(get_state.len(), 1, "{:#?}", receiver.spans());
    assert_eq!(
        (
            get_state[0].attr("rpc.system"),
            get_state[0].attr("rpc.service"),
            get_state[0].attr("rpc.method"),
            get_state[0].attr("rpc.grpc.status_code")
        ),
        ("grpc", "maxx.v1.RiskService", "GetState", "0")
    );
    let kill = receiver.named("maxx.v1.RiskService/Kill");
    assert_eq!(kill.len(), 1, "{:#?}", receiver.spans());
    assert_eq!(
        kill[0].attr("rpc.grpc.status_code"),
        (Code::Unauthenticated as i32).to_string()
    );
    let metrics = receiver.metric_names();
    for name in ["maxx.http.server.requests", "maxx.rpc.server.requests"] {
        assert!(metrics.iter().any(|m| m == name), "{name} not among {metrics:?}");
    }
}

#[test]
fn endpoint_null_starts_no_export_at_all() {
    let dir = TempDir::new("otlp-null");
    let path = dir.write("run.yaml", config("null"));
    let mut run = Running::start(&path);
    run.poll("/healthz to answer", |r| match r.get("/healthz") {
        (200 | 503, _) => Ok(()),
        (s, v) => Err(format!("{s} {v}")),
    });
    let threads = thread_names(run.child.id());
    assert!(!threads.iter().any(|n| n.starts_with("otel")), "{threads:?}");
    let stderr = run.stop();
    assert!(!stderr.contains("OpenTelemetry"), "{stderr}");
}

#[test]
fn an_unreachable_endpoint_costs_one_warning_per_signal_and_nothing_else() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = TempDir::new("otlp-down");
    let path = dir.write("run.yaml", config(&format!("\"http://127.0.0.1:{port}\"")));
    let mut run = Running::start(&path);
    run.poll("/healthz to answer", |r| match r.get("/healthz") {
        (200 | 503, _) => Ok(()),
        (s, v) => Err(format!("{s} {v}")),
    });
    for _ in 0..20 {
        assert_eq!(run.get("/livez").0, 200);
    }
    let (status, body) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let stderr = run.stop();
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("OpenTelemetry export failed"))
        .collect();
    assert!(
        (1..=2).contains(&failures.len()),
        "one warning per signal (traces, metrics):\n{stderr}"
    );
    assert!(
        failures.iter().all(|l| l.contains("\"level\":\"warn\"")),
        "{failures:?}"
    );
    let otel_lines = stderr.lines().filter(|l| l.contains("OpenTelemetry")).count();
    assert!(otel_lines <= 4, "no error spam:\n{stderr}");
}

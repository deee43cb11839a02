//! OpenTelemetry: traces and metrics of the control actions, exported over OTLP/gRPC to
//! `telemetry.otlp_endpoint`.
//!
//! [`Telemetry::start`] builds the exporters and returns a guard; with no endpoint it is
//! [`Telemetry::off`]: no tracing layer, no exporter, no thread, and the tower layers below pass
//! requests straight through. With an endpoint:
//!
//! - **Traces**: [`Telemetry::layer`] is a `tracing_subscriber` layer (tracing-opentelemetry)
//!   that turns the INFO-and-above `tracing` spans of the cold side into OpenTelemetry spans;
//!   events logged inside a span become its span events. The SDK's batch span processor
//!   queues finished spans (a bounded channel, never blocking the caller) and exports them from
//!   its own thread.
//! - **Metrics**: a periodic reader (its own thread, every [`METRICS_EVERY`]) exports the
//!   request counters and durations that [`http_layer`] and [`grpc_layer`] record.
//! - The gRPC client of both exporters (tonic, `connect_lazy`) runs on a one-thread tokio
//!   runtime owned by the guard (`otel-export`), so export works whatever runtime the caller
//!   has: the cold side's current-thread runtime and the hot threads are never involved.
//! - An endpoint that cannot be reached costs one `warn` line per signal (traces, metrics),
//!   then silence until an export succeeds again (one `info` line); spans that could not be
//!   delivered are dropped, the run is not affected.
//! - [`Telemetry::shutdown`] flushes what is queued within [`SHUTDOWN_BOUND`]; dropping the
//!   guard does the same.
//!
//! The spans of the control surface: [`http_layer`] on the HTTP router gives one span per
//! request named `"{METHOD} {route}"` (the route template, e.g. `POST /reload`) with
//! `http.request.method`, `http.route`, `url.path` and `http.response.status_code`;
//! [`grpc_layer`] on the tonic server gives one span per call named
//! `"{package.Service}/{Method}"` with `rpc.system`, `rpc.service`, `rpc.method` and
//! `rpc.grpc.status_code`. Both count requests (`maxx.http.server.requests`,
//! `maxx.rpc.server.requests`) and time them (`http.server.request.duration`,
//! `rpc.server.call.duration`, seconds).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// Longest wait for one export request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait at shutdown for what is queued to be exported.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(3);
/// How often metrics are exported (and once more at shutdown).
pub const METRICS_EVERY: Duration = Duration::from_secs(10);
/// How long finished spans wait to be batched (shutdown exports them at once).
const BATCH_DELAY: Duration = Duration::from_secs(2);
/// The instrumentation scope of the spans and instruments.
const SCOPE: &str = "maxx";

/// Whether a [`Telemetry`] is exporting: the tower layers only make spans and count while it is.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The running exporters; dropping it (or [`shutdown`](Self::shutdown)) flushes and stops them.
#[derive(Debug)]
pub struct Telemetry {
    inner: Option<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: String,
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
    runtime: tokio::runtime::Runtime,
}

impl Telemetry {
    /// No export: no layer, no exporter, no background work.
    pub fn off() -> Telemetry {
        Telemetry { inner: None }
    }

    /// Starts exporting to `endpoint` (`http://host:port`, or `https://` for TLS with the
    /// webpki roots); `None` is [`off`](Self::off). `service_name` and `instance` become the
    /// resource's `service.name` and `service.instance.id`. Nothing is sent until there is
    /// something to export, so an endpoint that is down does not fail this: only a malformed
    /// one does.
    pub fn start(endpoint: Option<&str>, service_name: &str, instance: &str) -> Result<Telemetry, String> {
        let Some(endpoint) = endpoint else {
            return Ok(Telemetry::off());
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("otel-export")
            .enable_all()
            .build()
            .map_err(|e| format!("OpenTelemetry: starting the export runtime: {e}"))?;
        // `connect_lazy` spawns the channel's worker on the runtime entered here.
        let (spans, metrics) = {
            let _in = runtime.enter();
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| format!("OpenTelemetry span exporter for {endpoint}: {e}"))?;
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| format!("OpenTelemetry metric exporter for {endpoint}: {e}"))?;
            (spans, metrics)
        };
        let resource = Resource::builder()
            .with_service_name(service_name.to_string())
            .with_attribute(KeyValue::new("service.instance.id", instance.to_string()))
            .build();
        let batch = BatchSpanProcessor::builder(Warned::new(spans, "traces", endpoint))
            .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(BATCH_DELAY).build())
            .build();
        let traces = SdkTracerProvider::builder()
            .with_span_processor(batch)
            .with_resource(resource.clone())
            .build();
        let reader = PeriodicReader::builder(Warned::new(metrics, "metrics", endpoint))
            .with_interval(METRICS_EVERY)
            .build();
        let metrics = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        opentelemetry::global::set_meter_provider(metrics.clone());
        ACTIVE.store(true, Ordering::Release);
        Ok(Telemetry {
            inner: Some(Inner {
                endpoint: endpoint.to_string(),
                traces,
                metrics,
                runtime,
            }),
        })
    }

    /// Whether spans and metrics are being exported.
    pub fn is_active(&self) -> bool {
        self.inner.is_some()
    }

    /// The export target, when active.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.endpoint.as_str())
    }

    /// The `tracing_subscriber` layer that exports spans, or `None` when off (an `Option` of a
    /// layer is a layer: add it to the subscriber either way). It takes INFO-and-above spans
    /// and the events inside them, except those of the transport crates underneath the exporter.
    pub fn layer<S>(&self) -> Option<impl Layer<S> + Send + Sync + 'static>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let inner = self.inner.as_ref()?;
        let filter = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("h2", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF)
            .with_target("tonic", LevelFilter::OFF)
            .with_target("tower", LevelFilter::OFF)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(inner.traces.tracer(SCOPE))
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_filter(filter),
        )
    }

    /// Exports what is queued (spans, a last metrics collection) and stops, within about
    /// [`SHUTDOWN_BOUND`]; what cannot be delivered by then is dropped. Returns the problems.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), String> {
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        ACTIVE.store(false, Ordering::Release);
        let deadline = Instant::now() + SHUTDOWN_BOUND;
        // The metrics reader waits up to 5 s of its own: run it beside the traces, bounded.
        let (done, metrics_done) = mpsc::channel();
        let metrics = inner.metrics.clone();
        let metrics_thread = std::thread::Builder::new().name("otel-shutdown".into()).spawn(move || {
            let _ = done.send(metrics.shutdown_with_timeout(SHUTDOWN_BOUND));
        });
        let mut problems = Vec::new();
        if let Err(e) = inner.traces.shutdown_with_timeout(SHUTDOWN_BOUND) {
            problems.push(format!("traces: {e}"));
        }
        if metrics_thread.is_ok() {
            match metrics_done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("metrics: {e}")),
                Err(_) => problems.push(format!("metrics: not exported within {SHUTDOWN_BOUND:?}")),
            }
        }
        // Drops the channel workers; an export still waiting on them fails at once.
        inner.runtime.shutdown_background();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "OpenTelemetry export to {} at shutdown: {}",
                inner.endpoint,
                problems.join("; ")
            ))
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// An exporter that says once that exports fail (one `warn` line), and once that they work
/// again, instead of once per batch.
#[derive(Debug)]
struct Warned<E> {
    inner: E,
    signal: &'static str,
    endpoint: String,
    failing: AtomicBool,
}

impl<E> Warned<E> {
    fn new(inner: E, signal: &'static str, endpoint: &str) -> Warned<E> {
        Warned {
            inner,
            signal,
            endpoint: endpoint.to_string(),
            failing: AtomicBool::new(false),
        }
    }

    fn note(&self, result: &OTelSdkResult) {
        match result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                signal = self.signal,
                endpoint = %self.endpoint,
                error = %e,
                "OpenTelemetry export failed; dropping what cannot be sent and retrying quietly"
            ),
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => tracing::info!(
                signal = self.signal,
                endpoint = %self.endpoint,
                "OpenTelemetry export works again"
            ),
            _ => {}
        }
    }
}

impl<E: SpanExporter> SpanExporter for Warned<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.note(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Warned<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.note(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// Which surface a [`ControlLayer`] wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Surface {
    Http,
    Grpc,
}

/// The counters and timers of one surface.
#[derive(Debug)]
struct Instruments {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

impl Instruments {
    fn new(surface: Surface) -> Instruments {
        let meter = opentelemetry::global::meter_provider().meter(SCOPE);
        match surface {
            Surface::Http => Instruments {
                requests: meter
                    .u64_counter("maxx.http.server.requests")
                    .with_description("HTTP API requests by route, method and status")
                    .build(),
                duration: meter
                    .f64_histogram("http.server.request.duration")
                    .with_unit("s")
                    .with_description("HTTP API request duration")
                    .build(),
            },
            Surface::Grpc => Instruments {
                requests: meter
                    .u64_counter("maxx.rpc.server.requests")
                    .with_description("gRPC calls by method and status code")
                    .build(),
                duration: meter
                    .f64_histogram("rpc.server.call.duration")
                    .with_unit("s")
                    .with_description("gRPC call duration")
                    .build(),
            },
        }
    }
}

/// The tower layer for the HTTP router (`Router::layer`, so the matched route is known): one
/// span per request, plus request counters and durations. A pass-through when no
/// [`Telemetry`] is active at the time it is made.
pub fn http_layer() -> ControlLayer {
    ControlLayer::new(Surface::Http)
}

/// The tower layer for the tonic server (`Server::builder().layer(..)`): one span per call,
/// plus call counters and durations. A pass-through when no [`Telemetry`] is active at the
/// time it is made.
pub fn grpc_layer() -> ControlLayer {
    ControlLayer::new(Surface::Grpc)
}

/// See [`http_layer`] and [`grpc_layer`].
#[derive(Clone, Debug)]
pub struct ControlLayer {
    surface: Surface,
    /// `None` when telemetry is off: the service passes requests through.
    instruments: Option<Arc<Instruments>>,
}

impl ControlLayer {
    fn new(surface: Surface) -> ControlLayer {
        let instruments = ACTIVE
            .load(Ordering::Acquire)
            .then(|| Arc::new(Instruments::new(surface)));
        ControlLayer { surface, instruments }
    }
}

impl<S> tower::Layer<S> for ControlLayer {
    type Service = ControlService<S>;

    fn layer(&self, inner: S) -> ControlService<S> {
        ControlService {
            inner,
            surface: self.surface,
            instruments: self.instruments.clone(),
        }
    }
}

/// The service a [`ControlLayer`] makes.
#[derive(Clone, Debug)]
pub struct ControlService<S> {
    inner: S,
    surface: Surface,
    instruments: Option<Arc<Instruments>>,
}

/// gRPC status codes that are the server's fault (OpenTelemetry's rule for server spans).
fn grpc_server_error(code: i64) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl<S, B, RB> tower::Service<Request<B>> for ControlService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(instruments) = self.instruments.clone() else {
            return Box::pin(self.inner.call(req));
        };
        let surface = self.surface;
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let (span, labels) = match surface {
            Surface::Http => {
                let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
                let name = match &route {
                    Some(r) => format!("{method} {r}"),
                    None => method.clone(),
                };
                let span = tracing::info_span!(
                    target: "maxx::control",
                    "http.request",
                    otel.name = %name,
                    otel.kind = "server",
                    otel.status_code = Empty,
                    http.request.method = %method,
                    http.route = route.as_deref(),
                    url.path = %path,
                    http.response.status_code = Empty,
                );
                let mut labels = vec![KeyValue::new("http.request.method", method)];
                if let Some(r) = route {
                    labels.push(KeyValue::new("http.route", r));
                }
                (span, labels)
            }
            Surface::Grpc => {
                let full = path.trim_start_matches('/').to_string();
                let (service, rpc) = full.rsplit_once('/').unwrap_or((full.as_str(), ""));
                let span = tracing::info_span!(
                    target: "maxx::control",
                    "grpc.request",
                    otel.name = %full,
                    otel.kind = "server",
                    otel.status_code = Empty,
                    rpc.system = "grpc",
                    rpc.service = service,
                    rpc.method = rpc,
                    rpc.grpc.status_code = Empty,
                );
                let labels = vec![
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.service", service.to_string()),
                    KeyValue::new("rpc.method", rpc.to_string()),
                ];
                (span, labels)
            }
        };
        let started = Instant::now();
        let future = {
            let _in = span.enter();
            self.inner.call(req)
        };
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            let mut labels = labels;
            match (&result, surface) {
                (Ok(resp), Surface::Http) => {
                    let status = resp.status().as_u16();
                    span.record("http.response.status_code", status);
                    if status >= 500 {
                        span.record("otel.status_code", "ERROR");
                    }
                    labels.push(KeyValue::new("http.response.status_code", i64::from(status)));
                }
                (Ok(resp), Surface::Grpc) => {
                    // A unary error is a trailers-only response (grpc-status in the headers);
                    // a success carries grpc-status 0 in the trailers.
                    let code = resp
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(0);
                    span.record("rpc.grpc.status_code", code);
                    if grpc_server_error(code) {
                        span.record("otel.status_code", "ERROR");
                    }
                    labels.push(KeyValue::new("rpc.grpc.status_code", code));
                }
                (Err(_), _) => {
                    span.record("otel.status_code", "ERROR");
                    labels.push(KeyValue::new("error.type", "transport"));
                }
            }
            instruments.requests.add(1, &labels);
            instruments.duration.record(started.elapsed().as_secs_f64(), &labels);
            result
        })
    }
}

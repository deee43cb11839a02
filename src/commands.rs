//! The smaller subcommands: `config check`, `replay` and `sim`, plus config loading and
//! logging set-up shared by all of them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use maxx_cold::config::{self, Config, LogFormat};
use maxx_cold::emit::EmitKind;
use maxx_cold::engine::spec;
use maxx_cold::logging::{JsonLines, LogSink};
use maxx_cold::replay::{ReplayOptions, replay};
use maxx_cold::telemetry::Telemetry;
use maxx_cold::venues::start_sim;
use maxx_hot::ids::Venue;

use crate::cli::{KillArgs, ReplayArgs, SimArgs, Speed};

/// Loads and validates a config, or explains every problem on stderr.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{}: {} problem(s):", path.display(), errors.0.len());
        for p in &errors.0 {
            eprintln!("  {}: {}", p.path, p.message);
        }
        ExitCode::from(1)
    })
}

/// Installs the log subscriber: JSON lines (or text) on stderr at the configured level, which a
/// config reload can change; `RUST_LOG` overrides the level for the whole run. Lines go through a [`LogSink`] (written by its own thread).
/// With `telemetry.otlp_endpoint` set, spans are also exported over OTLP
/// ([`Telemetry`]); the log level does not apply to them. Keep the returned [`Logging`] until
/// the command ends and [`finish`](Logging::finish) it: that flushes the export and writes
/// what is left of the logs.
pub fn init_logging(config: &Config) -> Logging {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let sink = LogSink::start();
    // RUST_LOG (when set and valid) wins over telemetry.log_level for the whole run; otherwise a
    // config reload changes the level through `maxx_cold::logging::set_log_level`.
    let filter = maxx_cold::logging::level_filter(config.telemetry.log_level);
    let fmt = tracing_subscriber::fmt::layer().with_writer(sink.writer());
    let fmt = match config.telemetry.log_format {
        LogFormat::Json => fmt.event_format(JsonLines).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let (telemetry, problem) = match Telemetry::start(
        config.telemetry.otlp_endpoint.as_deref(),
        "maxx",
        &config.redis.instance,
    ) {
        Ok(t) => (t, None),
        Err(e) => (Telemetry::off(), Some(e)),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(telemetry.layer())
        .try_init();
    match (&problem, telemetry.endpoint()) {
        (Some(e), _) => tracing::warn!(error = %e, "OpenTelemetry export disabled"),
        (None, Some(endpoint)) => {
            tracing::info!(endpoint, "OpenTelemetry: exporting traces and metrics over OTLP/gRPC")
        }
        (None, None) => {}
    }
    Logging { sink, telemetry }
}

/// The log output and the OpenTelemetry export of one command; see [`init_logging`].
#[derive(Debug)]
pub struct Logging {
    sink: LogSink,
    telemetry: Telemetry,
}

impl Logging {
    /// Flushes the OpenTelemetry export (bounded by
    /// [`SHUTDOWN_BOUND`](maxx_cold::telemetry::SHUTDOWN_BOUND)), then writes every log line
    /// still buffered, the export's own last words included.
    pub fn finish(self) {
        let Logging { sink, telemetry } = self;
        if let Err(e) = telemetry.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry: not everything was exported");
        }
        sink.finish();
    }
}

/// `maxx config check PATH`.
pub fn config_check(path: &Path) -> ExitCode {
    match load_config(path) {
        Ok(c) => {
            println!(
                "{}: ok ({} symbol(s), {} enabled feed(s))",
                path.display(),
                c.symbols.len(),
                c.enabled_feeds().count()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn venue(name: &str) -> Result<Venue> {
    Venue::from_name(name).with_context(|| {
        let all: Vec<&str> = Venue::ALL.iter().map(|v| v.name()).collect();
        format!("unknown venue {name:?} (known: {})", all.join(", "))
    })
}

/// `maxx replay`.
pub fn replay_cmd(args: &ReplayArgs, config: &Config) -> Result<()> {
    let venue = venue(&args.venue)?;
    let opts = ReplayOptions {
        venue,
        files: args.files.clone(),
        speed: match args.speed {
            Speed::Max => None,
            Speed::Times(x) => Some(x),
        },
        emit: args.emit.as_deref().and_then(EmitKind::from_name),
        taker_fee_bps_milli: config.exec.paper.taker_fee_bps_milli,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = replay(&spec(config), &opts, &mut out)?;
    drop(out);
    // With --emit the records own stdout; the summary goes to stderr so pipes stay clean.
    let text = if args.json {
        summary.to_json() + "\n"
    } else {
        summary.to_text()
    };
    if opts.emit.is_some() {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    std::io::stdout().flush().ok();
    Ok(())
}

/// `maxx sim`.
pub fn sim_cmd(args: &SimArgs, config: &Config) -> Result<()> {
    let venue = venue(&args.venue)?;
    let handle = start_sim(config, venue, args.bind, args.replay.clone()).map_err(anyhow::Error::msg)?;
    let scheme = if venue == Venue::Oanda { "http" } else { "ws" };
    println!("{venue} simulator listening on {scheme}://{}", handle.local_addr());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let limit = tokio::time::sleep(args.duration.unwrap_or(Duration::from_secs(100 * 365 * 86_400)));
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = limit => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    handle.shutdown();
    Ok(())
}

/// `maxx kill`: `POST /risk/kill` to the running instance; if that cannot be done (no HTTP,
/// wedged, wrong token), create `risk.kill_file`, which the engine's kill watcher (a plain
/// thread, independent of the HTTP side) turns into the same trip within 100 ms.
pub fn kill_cmd(args: &KillArgs, config: &Config) -> Result<ExitCode> {
    let addr = args.addr.or_else(|| {
        let mut a = config.http.listen;
        if a.port() == 0 || !config.http.enabled {
            return None;
        }
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Some(a)
    });
    let http_error = match addr {
        Some(addr) => match maxx_cold::http::load_token(config.http.token_file.as_deref()) {
            Ok(Some(token)) => match post_kill(addr, &token) {
                Ok(()) => {
                    println!("kill switch tripped over HTTP at {addr}");
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => format!("HTTP {addr}: {e}"),
            },
            Ok(None) => format!("no API token ({} or http.token_file)", maxx_cold::http::TOKEN_ENV),
            Err(e) => e,
        },
        None => "no HTTP address (http disabled or bound to port 0; pass --addr)".to_string(),
    };
    let Some(file) = &config.risk.kill_file else {
        eprintln!("maxx kill: {http_error}; and risk.kill_file is null: nothing tripped");
        return Ok(ExitCode::from(1));
    };
    maxx_cold::files::write_atomically(file, b"kill requested by maxx kill\n")
        .with_context(|| format!("{http_error}; writing risk.kill_file {}", file.display()))?;
    println!(
        "{http_error}; wrote {}: the running engine trips its kill switch within 100 ms (or at its next start)",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// One blocking `POST /risk/kill` with a bearer token; 3 s timeouts.
fn post_kill(addr: std::net::SocketAddr, token: &str) -> Result<()> {
    use std::io::Read;
    let timeout = Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "POST /risk/kill HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let status = reply.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        anyhow::bail!("status {status}: {}", body.trim())
    }
}

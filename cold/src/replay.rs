//! `maxx replay`: captured venue frames through the same decoders and stages, in lockstep.
//!
//! The captures are loaded into memory, then one thread runs the engine's tasks with
//! [`run_lockstep`]: a frame is decoded, its consequences (signal, intent, order, fill) settle
//! through every ring, the taps are drained, and only then is the next frame read. The result is
//! a pure function of the input: emitted records and the summary (latency aside) are
//! byte-identical from run to run.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use maxx_hot::capture::Capture;
use maxx_hot::feed::any::{AnyDecoder, AnySource};
use maxx_hot::ids::Venue;
use maxx_hot::runtime::engine::{Engine, EngineSpec, FeedInput, build};
use maxx_hot::runtime::run_lockstep;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::source::ReplaySource;
use maxx_hot::stage::exec::PaperVenue;

use crate::emit::{EmitKind, fill_line, order_line, signal_line, tick_line};
use crate::summary::{Summary, summarize};
use crate::taps::{Record, TapDrain};

/// What to replay and how.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The venue whose wire format the captures hold.
    pub venue: Venue,
    /// Capture files, replayed in order.
    pub files: Vec<PathBuf>,
    /// Pace by receive times at this multiple of real time; `None` for as fast as possible.
    pub speed: Option<f64>,
    /// Records to print, one JSON object per line.
    pub emit: Option<EmitKind>,
    /// Paper taker fee in thousandths of a basis point.
    pub taker_fee_bps_milli: i64,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A capture file could not be read.
    #[error("cannot read capture {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing the emitted records failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(io::Error),
}

/// Replays the captures and returns the summary; emitted records go to `out`.
pub fn replay(spec: &EngineSpec, opts: &ReplayOptions, out: &mut impl Write) -> Result<Summary, ReplayError> {
    let mut captures = Vec::new();
    for path in &opts.files {
        captures.push(Capture::load(path).map_err(|source| ReplayError::Read {
            path: path.clone(),
            source,
        })?);
    }
    let stats = Arc::new(FeedStats::new(opts.venue));
    let feed = FeedInput {
        venue: opts.venue,
        source: AnySource::Replay(Box::new(ReplaySource::new(captures, opts.speed))),
        decoder: AnyDecoder::for_venue(opts.venue, spec.index.len()),
        stats,
    };
    let Engine {
        tasks, mut cold, stats, ..
    } = build(
        spec,
        vec![feed],
        vec![PaperVenue::new(opts.venue, opts.taker_fee_bps_milli)],
    );
    let mut drain = TapDrain::new(&spec.index);
    let index = Arc::clone(&spec.index);
    let mut tasks: Vec<_> = tasks.into_iter().map(|(_, t)| t).collect();
    let mut write_error = None;
    run_lockstep(&mut tasks, || {
        drain.drain(&mut cold, &mut |record| {
            if write_error.is_some() {
                return;
            }
            let line = match (opts.emit, record) {
                (Some(EmitKind::Ticks), Record::Tick(t)) => Some(tick_line(&index, &t)),
                (Some(EmitKind::Signals), Record::Signal(s)) => Some(signal_line(&index, &s)),
                (Some(EmitKind::Orders), Record::Order(o)) => Some(order_line(&index, &o)),
                (Some(EmitKind::Fills), Record::Report(r)) => fill_line(&index, &r),
                _ => None,
            };
            if let Some(line) = line
                && let Err(e) = writeln!(out, "{line}")
            {
                write_error = Some(e);
            }
        });
    });
    if let Some(e) = write_error {
        return Err(ReplayError::Output(e));
    }
    out.flush().map_err(ReplayError::Output)?;
    let feeds: Vec<&FeedStats> = stats.feeds.iter().map(|f| &**f).collect();
    Ok(summarize(
        &spec.index,
        &feeds,
        &stats.alpha,
        &stats.risk,
        &stats.exec,
        &drain,
    ))
}

//! The capture writer behind `market_data.capture_dir`: every raw frame a feed receives, in the
//! capture format `maxx replay` reads (`<recv_ns> <frame>` per line).
//!
//! The feed thread copies each frame into a byte ring (`capture[v]` in the wiring table) and
//! never touches the file; a cold-side thread per feed empties the ring into a buffered file.
//! If the disk falls behind and the ring fills, the feed skips capturing that frame and counts
//! it (`capture_dropped`) rather than stalling.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use maxx_hot::ids::Venue;
use maxx_hot::wiring::CAPTURE_HEADER;
use rtrb::Consumer;

use crate::logging::rfc3339_now;

/// A running capture writer.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<io::Result<u64>>,
}

/// Starts writing `venue`'s frames from `ring` to a new file in `dir` (created if missing).
pub fn spawn(dir: &Path, venue: Venue, ring: Consumer<u8>) -> io::Result<Recorder> {
    std::fs::create_dir_all(dir)?;
    let started = rfc3339_now();
    let stamp: String = started.chars().filter(char::is_ascii_digit).take(14).collect();
    let path = dir.join(format!("{venue}-{stamp}-{}.capture", std::process::id()));
    let mut file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    writeln!(
        file,
        "# maxx capture: venue={venue} started={started}; lines are <recv_ns> <raw frame>"
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let handle = std::thread::Builder::new().name(format!("capture-{venue}")).spawn({
        let stop = Arc::clone(&stop);
        move || write_loop(ring, file, &stop)
    })?;
    Ok(Recorder { path, stop, handle })
}

impl Recorder {
    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what is left in the ring, closes the file, and returns the frames written.
    /// Call after the feed has stopped.
    pub fn finish(self) -> io::Result<u64> {
        // Release: pairs with the Acquire in `write_loop`.
        self.stop.store(true, Ordering::Release);
        self.handle
            .join()
            .map_err(|_| io::Error::other("capture writer panicked"))?
    }
}

fn write_loop(mut ring: Consumer<u8>, mut file: BufWriter<File>, stop: &AtomicBool) -> io::Result<u64> {
    let mut pending: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut frames = 0u64;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let n = ring.slots();
        if n > 0 {
            if let Ok(chunk) = ring.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                pending.extend_from_slice(a);
                pending.extend_from_slice(b);
                chunk.commit_all();
            }
            frames += write_records(&mut pending, &mut file)?;
        } else if stopping {
            file.flush()?;
            return Ok(frames);
        } else {
            file.flush()?;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Writes every complete record in `pending` as a capture line and removes it.
fn write_records(pending: &mut Vec<u8>, out: &mut impl Write) -> io::Result<u64> {
    let mut at = 0;
    let mut written = 0;
    while pending.len() - at >= CAPTURE_HEADER {
        let len = u32::from_le_bytes(pending[at..at + 4].try_into().unwrap_or_default()) as usize;
        let recv_ns = u64::from_le_bytes(pending[at + 4..at + 12].try_into().unwrap_or_default());
        let end = at + CAPTURE_HEADER + len;
        if end > pending.len() {
            break;
        }
        write!(out, "{recv_ns} ")?;
        let frame = &pending[at + CAPTURE_HEADER..end];
        if frame.iter().any(|&b| b == b'\n' || b == b'\r') {
            // A line per frame: line breaks inside a frame are JSON whitespace, so a space
            // keeps the frame's meaning.
            let flat: Vec<u8> = frame
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                .collect();
            out.write_all(&flat)?;
        } else {
            out.write_all(frame)?;
        }
        out.write_all(b"\n")?;
        written += 1;
        at = end;
    }
    pending.drain(..at);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(recv_ns: u64, frame: &[u8]) -> Vec<u8> {
        let mut v = (frame.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&recv_ns.to_le_bytes());
        v.extend_from_slice(frame);
        v
    }

    #[test]
    fn records_become_capture_lines_and_partial_records_wait() {
        let mut pending = record(7, b"{\"a\":1}");
        let second = record(8, b"{\"b\":\n2}");
        pending.extend_from_slice(&second[..5]);
        let mut out = Vec::new();
        assert_eq!(write_records(&mut pending, &mut out).unwrap(), 1);
        assert_eq!(pending.len(), 5);
        pending.extend_from_slice(&second[5..]);
        assert_eq!(write_records(&mut pending, &mut out).unwrap(), 1);
        assert!(pending.is_empty());
        assert_eq!(String::from_utf8(out).unwrap(), "7 {\"a\":1}\n8 {\"b\": 2}\n");
    }
}

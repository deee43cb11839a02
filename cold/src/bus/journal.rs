//! A local append-only journal for stream entries that must never be lost (orders, fills, PnL).
//!
//! The publisher writes such entries here while Redis is down or its queue is full, and
//! acknowledges them once Redis has them. After a crash, [`Journal::open`] hands back exactly the
//! entries appended and not yet acknowledged, in order, so the publisher resumes without loss;
//! re-sending an entry that did reach Redis before the crash is harmless because entries carry
//! explicit stream ids (see the module [`crate::bus`]).
//!
//! # Files
//!
//! A journal is a directory holding:
//! - segment files `journal-<n>.log`, where `<n>` (20 zero-padded decimal digits) is the journal
//!   sequence number of the first record the segment holds (or will hold, while empty);
//! - `checkpoint`, the highest acknowledged sequence number as one text line `acked <seq>`,
//!   replaced atomically ([`crate::files::write_atomically`]: temporary file, fsync, rename,
//!   fsync of the directory). A missing checkpoint means nothing was acknowledged yet.
//!
//! Other files in the directory are ignored, except that a `journal-*.log` whose number does not
//! parse is reported as corrupt rather than passed over.
//!
//! A segment starts with the 8-byte magic `MXJRNL01` and continues with records, each:
//!
//! ```text
//! u32 LE  payload length L (bytes after the 8-byte record header)
//! u32 LE  CRC-32 (IEEE 802.3, as zlib and crc32fast compute it) of the payload
//! payload:
//!   u64 LE  journal sequence number (1, 2, 3, ... with no gaps over the whole journal)
//!   str     stream
//!   str     id
//!   u32 LE  field count, then per field: str key, str value
//! str = u32 LE byte length followed by that many bytes of UTF-8
//! ```
//!
//! Sequence numbers start at 1 and are never reused, also after every segment was deleted (the
//! checkpoint remembers where they stood). Appends go straight to the file, a whole record at a
//! time (no user-space buffer), so a record that [`Journal::append`] accepted survives a
//! crash of the process; surviving power loss depends on the [`FsyncPolicy`].
//!
//! # Damage
//!
//! A crash in the middle of an append leaves at most one incomplete record at the end of the
//! last segment. [`Journal::open`] recognises such a torn tail — fewer bytes left than the
//! smallest record, a plausible length (at most [`MAX_PAYLOAD`]) reaching past the end of the
//! file, a final record whose CRC does not match, or a run of zero bytes to the end of the file
//! (what a file system shows for blocks it allocated but never wrote) — drops it, and truncates
//! the segment to its last complete record. A last segment whose header is cut short or zero
//! (a crash while it was created) held no record and gets its header rewritten.
//!
//! Anything else is corruption and [`Journal::open`] stops at the first bad record with
//! [`JournalError::Corrupt`] naming the segment and byte offset: a bad record followed by more
//! data, damage in a segment that is not the last, sequence numbers out of order, or unacknowledged
//! entries missing between segments. The journal never skips a bad record, because it cannot tell
//! whether the entry behind it was acknowledged: an operator decides (for instance by moving the
//! damaged segment away after checking the stream in Redis).
//!
//! # Space
//!
//! A segment is closed and a new one started once it would grow beyond
//! [`JournalOptions::segment_bytes`]. A segment is deleted as soon as all of its entries are
//! acknowledged; when everything is acknowledged the active segment is replaced by an empty one,
//! so an idle journal holds one header. [`JournalOptions::max_bytes`] caps the bytes of all
//! segments together; an append that would pass it fails with [`JournalError::Full`] and writes
//! nothing. The cap counts bytes on disk, including acknowledged entries that share a segment with
//! pending ones, so `segment_bytes` should be well below `max_bytes`.
//!
//! # Use
//!
//! A journal directory has one owner: one [`Journal`] in one process at a time (the caller
//! guarantees it, e.g. one publisher per configured directory). All calls block on file I/O; on a
//! tokio runtime call them from a blocking context (`spawn_blocking` or a dedicated thread).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Entry;

/// The first bytes of every segment file; the digits name the format version.
const MAGIC: &[u8; 8] = b"MXJRNL01";
/// Bytes before a record's payload: its length and its CRC.
const RECORD_HEADER: usize = 8;
/// The smallest payload: a sequence number, two empty strings and a zero field count.
const MIN_PAYLOAD: usize = 8 + 4 + 4 + 4;
/// The largest payload accepted, so that a damaged length can never make [`Journal::open`]
/// allocate without bound.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// Name of the checkpoint file.
const CHECKPOINT: &str = "checkpoint";
/// Segment file names: `journal-<20 digits>.log`.
const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".log";

/// When appended records are forced to stable storage with `fsync` (`fdatasync`).
///
/// Every policy survives a crash of the process: an append has reached the operating system
/// when [`Journal::append`] returns. They differ on power loss or a kernel crash. Whatever the
/// policy, acknowledgements ([`Journal::ack_through`]) are always synced. Under `Always` a
/// journal reopened after power loss returns exactly the entries appended and not acknowledged.
/// Under the other policies the unsynced entries are lost; the file system may also have kept
/// some later unsynced blocks and not earlier ones, which [`Journal::open`] reports as
/// [`JournalError::Corrupt`] rather than returning entries with a hole between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Syncs every record before [`Journal::append`] returns (and the directory when a segment
    /// is created): an appended entry survives power loss. One `fsync` per append.
    Always,
    /// Syncs on the first append at least this many milliseconds after the previous sync, on
    /// [`Journal::sync`] / [`Journal::sync_if_due`], when a segment is closed, and on drop.
    /// Power loss loses at most the entries appended since the last sync, that is at most the
    /// last `n` ms of appends provided the owner calls [`Journal::sync_if_due`] at least every
    /// `n` ms while appends are outstanding.
    EveryMs(u64),
    /// Syncs only on [`Journal::sync`], when a segment is closed, and on drop: the owner decides
    /// (e.g. once per batch). Power loss loses the entries appended since the last sync.
    Batch,
    /// Never syncs segments; the operating system writes them back when it chooses (on Linux
    /// typically within 30 s). Power loss can lose any entry not yet written back.
    Never,
}

/// How a journal is laid out and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// When appends are synced to disk.
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started before it grows beyond this many bytes
    /// (a single record larger than this gets a segment of its own).
    pub segment_bytes: u64,
    /// All segments together never hold more than this many bytes; an append that would pass it
    /// fails with [`JournalError::Full`].
    pub max_bytes: u64,
}

impl JournalOptions {
    /// 64 MiB segments, at most 1 GiB in all, with the given sync policy.
    pub fn new(fsync: FsyncPolicy) -> Self {
        Self {
            fsync,
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
        }
    }

    fn validate(&self) -> Result<(), JournalError> {
        let smallest = (MAGIC.len() + RECORD_HEADER + MIN_PAYLOAD) as u64;
        if self.segment_bytes < smallest {
            return Err(JournalError::InvalidOptions(format!(
                "segment_bytes {} is below {smallest}, the size of a segment holding one empty entry",
                self.segment_bytes
            )));
        }
        if self.max_bytes < self.segment_bytes {
            return Err(JournalError::InvalidOptions(format!(
                "max_bytes {} is below segment_bytes {}",
                self.max_bytes, self.segment_bytes
            )));
        }
        if self.fsync == FsyncPolicy::EveryMs(0) {
            return Err(JournalError::InvalidOptions(
                "fsync every 0 ms: use FsyncPolicy::Always".to_string(),
            ));
        }
        Ok(())
    }
}

/// What can go wrong with a journal, roughly by what the caller can do about it: `Full` and
/// `TooLarge` refuse one append and leave the journal usable; `Io` may clear when the disk
/// does; `Corrupt` and `BadCheckpoint` need an operator; `AckBeyondEnd` and `InvalidOptions`
/// are the caller's bugs.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The append would take the journal past its cap; nothing was written. Acknowledging
    /// entries frees space.
    #[error("journal full: {used} bytes in use, a {needed}-byte record would pass the cap of {cap} bytes")]
    Full {
        /// Bytes held by all segments now.
        used: u64,
        /// Bytes the refused append needed (its record, plus a segment header if it opened one).
        needed: u64,
        /// The configured cap ([`JournalOptions::max_bytes`]).
        cap: u64,
    },
    /// The entry cannot be journaled at any fill level (its payload is above [`MAX_PAYLOAD`] or
    /// would not fit under [`JournalOptions::max_bytes`] alone); nothing was written.
    #[error(
        "journal entry for stream {stream:?} id {id:?} is {bytes} bytes encoded, above the largest record of {max} bytes"
    )]
    TooLarge {
        /// The entry's stream.
        stream: String,
        /// The entry's id.
        id: String,
        /// Its encoded payload size.
        bytes: u64,
        /// The largest payload accepted.
        max: u64,
    },
    /// A file operation failed.
    #[error("journal i/o on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A segment holds a damaged record that is not a torn tail, or entries are missing.
    #[error("journal segment {segment} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the first bad record (or of the segment's start).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint file cannot be read as `acked <seq>`.
    #[error("journal checkpoint {path}: {reason}")]
    BadCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An acknowledgement named a sequence number that was never appended.
    #[error("cannot acknowledge through journal seq {seq}: the last appended seq is {last}")]
    AckBeyondEnd {
        /// The sequence number asked for.
        seq: u64,
        /// The last sequence number appended.
        last: u64,
    },
    /// The options cannot describe a working journal.
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),
    /// An earlier write failed in a way that could not be undone; the journal refuses further
    /// appends until it is reopened (which repairs or reports the segment).
    #[error("journal is unusable after an earlier failed write to {0}; reopen it")]
    Broken(PathBuf),
}

/// One segment file as the journal tracks it.
#[derive(Debug)]
struct Segment {
    /// Sequence number of its first record (or of the next append, while empty).
    first: u64,
    path: PathBuf,
    /// Bytes in the file, header included.
    bytes: u64,
    /// Sequence number of its last record; `first - 1` while empty.
    last: u64,
}

impl Segment {
    fn is_empty(&self) -> bool {
        self.last < self.first
    }
}

/// An open journal: the single writer of one directory. See the module docs for the format
/// and guarantees.
pub struct Journal {
    dir: PathBuf,
    options: JournalOptions,
    /// All segments, oldest first; the last one is open for appending in `file`.
    segments: Vec<Segment>,
    file: File,
    /// Highest acknowledged sequence number (0: none).
    acked: u64,
    /// Sequence number the next append gets.
    next: u64,
    /// Appends not yet synced under `EveryMs`/`Batch`.
    dirty: bool,
    last_sync: Instant,
    /// Set when a failed write could not be rolled back.
    broken: bool,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("segments", &self.segments.len())
            .field("acked", &self.acked)
            .field("next", &self.next)
            .finish()
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` with 64 MiB segments and a 1 GiB cap,
    /// and returns it with the entries appended and not yet acknowledged, oldest first. Their
    /// sequence numbers are `acked() + 1 ..= last_seq()`.
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<(Journal, Vec<Entry>), JournalError> {
        Self::open_with(dir, JournalOptions::new(fsync))
    }

    /// [`Journal::open`] with explicit options. A torn final record is dropped and its segment
    /// truncated; any other damage is reported as [`JournalError::Corrupt`]. Segments whose
    /// entries are all acknowledged are deleted.
    pub fn open_with(dir: &Path, options: JournalOptions) -> Result<(Journal, Vec<Entry>), JournalError> {
        options.validate()?;
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let acked = read_checkpoint(&dir.join(CHECKPOINT))?;
        let mut found = list_segments(dir)?;

        let mut segments = Vec::with_capacity(found.len());
        let mut pending = Vec::new();
        // The highest sequence number seen or acknowledged: a segment may start right after it,
        // or anywhere at or below the acknowledged point (older acknowledged segments may have
        // been deleted), never later.
        let mut reach = acked;
        let count = found.len();
        for (i, (first, path)) in found.drain(..).enumerate() {
            let is_last = i + 1 == count;
            let prev_last = segments.last().map(|s: &Segment| s.last);
            if let Some(prev) = prev_last
                && first <= prev
            {
                return Err(corrupt(
                    &path,
                    0,
                    format!("segment starts at seq {first}, overlapping the previous one, which ends at {prev}"),
                ));
            }
            if first > reach + 1 {
                return Err(corrupt(
                    &path,
                    0,
                    format!(
                        "unacknowledged entries {} ..= {} are missing: the segment starts at seq {first}",
                        reach + 1,
                        first - 1
                    ),
                ));
            }
            let seg = scan_segment(&path, first, is_last, acked, &mut pending)?;
            reach = reach.max(seg.last);
            segments.push(seg);
        }

        let next = reach + 1;
        let mut journal = match segments.last() {
            // The last segment takes the next append only if it ends right before it: after
            // power loss the checkpoint can be ahead of what the segment kept, and then the
            // (all acknowledged) segment is left for `reclaim` and a new one started.
            Some(last) if last.last + 1 == next => {
                let file = open_for_append(&last.path, last.bytes)?;
                Journal::assemble(dir, options, segments, file, acked, next)
            }
            _ => {
                let (seg, file) = create_segment(dir, next, options.fsync)?;
                segments.push(seg);
                Journal::assemble(dir, options, segments, file, acked, next)
            }
        };
        journal.reclaim()?;
        Ok((journal, pending))
    }

    fn assemble(
        dir: &Path,
        options: JournalOptions,
        segments: Vec<Segment>,
        file: File,
        acked: u64,
        next: u64,
    ) -> Journal {
        Journal {
            dir: dir.to_path_buf(),
            options,
            segments,
            file,
            acked,
            next,
            dirty: false,
            last_sync: Instant::now(),
            broken: false,
        }
    }

    /// Appends one entry and returns its journal sequence number. When this returns the entry
    /// survives a crash of the process, and under [`FsyncPolicy::Always`] also power loss.
    /// Fails with [`JournalError::Full`] or [`JournalError::TooLarge`] without writing anything.
    pub fn append(&mut self, entry: &Entry) -> Result<u64, JournalError> {
        if self.broken {
            return Err(JournalError::Broken(self.active().path.clone()));
        }
        let seq = self.next;
        let record = encode(seq, entry)?;
        let len = record.len() as u64;
        // A record that could not fit even in an otherwise empty journal would be refused as
        // full forever.
        let fits = self.options.max_bytes - (MAGIC.len() + RECORD_HEADER) as u64;
        if len - RECORD_HEADER as u64 > fits {
            return Err(JournalError::TooLarge {
                stream: entry.stream.clone(),
                id: entry.id.clone(),
                bytes: len - RECORD_HEADER as u64,
                max: fits,
            });
        }
        let rotate = {
            let active = self.active();
            !active.is_empty() && active.bytes + len > self.options.segment_bytes
        };
        let needed = len + if rotate { MAGIC.len() as u64 } else { 0 };
        let used = self.used_bytes();
        if used + needed > self.options.max_bytes {
            return Err(JournalError::Full {
                used,
                needed,
                cap: self.options.max_bytes,
            });
        }
        if rotate {
            self.rotate()?;
        }
        let offset = self.active().bytes;
        if let Err(e) = self.file.write_all(&record) {
            // Undo a partial write, so the next record does not follow garbage.
            let path = self.active().path.clone();
            let undone = self
                .file
                .set_len(offset)
                .and_then(|()| self.file.seek(SeekFrom::Start(offset)).map(drop));
            if undone.is_err() {
                self.broken = true;
            }
            return Err(JournalError::Io { path, source: e });
        }
        let active = self.segments.last_mut().expect("a journal always has a segment");
        active.bytes += len;
        active.last = seq;
        self.next = seq + 1;
        match self.options.fsync {
            FsyncPolicy::Always => self.sync_active()?,
            FsyncPolicy::EveryMs(ms) => {
                self.dirty = true;
                if self.last_sync.elapsed() >= Duration::from_millis(ms) {
                    self.sync_active()?;
                }
            }
            FsyncPolicy::Batch => self.dirty = true,
            FsyncPolicy::Never => {}
        }
        Ok(seq)
    }

    /// Marks every entry up to and including `seq` as published: persists the checkpoint
    /// (synced, whatever the policy), then deletes the segments left with no pending entry.
    /// Acknowledging at or below the current point does nothing.
    pub fn ack_through(&mut self, seq: u64) -> Result<(), JournalError> {
        if seq <= self.acked {
            return Ok(());
        }
        let last = self.next - 1;
        if seq > last {
            return Err(JournalError::AckBeyondEnd { seq, last });
        }
        let path = self.dir.join(CHECKPOINT);
        crate::files::write_atomically(&path, format!("acked {seq}\n").as_bytes()).map_err(io_at(&path))?;
        self.acked = seq;
        self.reclaim()
    }

    /// Reads up to `max` entries starting at sequence number `from` (clamped to the first
    /// pending one), with their sequence numbers, oldest first. Lets the owner replay entries it
    /// journaled earlier in the same run, e.g. after Redis comes back.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, Entry)>, JournalError> {
        let from = from.max(self.acked + 1);
        let mut out = Vec::new();
        for seg in &self.segments {
            if out.len() >= max {
                break;
            }
            if seg.is_empty() || seg.last < from {
                continue;
            }
            let bytes = read_file(&seg.path, seg.bytes)?;
            let mut offset = MAGIC.len();
            while offset < bytes.len() && out.len() < max {
                let (seq, entry, end) =
                    decode_at(&bytes, offset).map_err(|reason| corrupt(&seg.path, offset as u64, reason))?;
                if seq >= from {
                    out.push((seq, entry));
                }
                offset = end;
            }
        }
        Ok(out)
    }

    /// Entries appended and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.next - 1 - self.acked
    }

    /// The highest acknowledged sequence number (0 before the first acknowledgement).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The sequence number of the last append (equal to [`Journal::acked`] when nothing is
    /// pending; 0 for a journal that never held an entry).
    pub fn last_seq(&self) -> u64 {
        self.next - 1
    }

    /// Bytes held by all segment files now; never above [`JournalOptions::max_bytes`].
    pub fn used_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Number of segment files.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forces every append so far to stable storage (a no-op under [`FsyncPolicy::Never`]).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.dirty && self.options.fsync != FsyncPolicy::Never {
            self.sync_active()?;
        }
        Ok(())
    }

    /// Under [`FsyncPolicy::EveryMs`], syncs if appends are outstanding and the interval has
    /// passed; call it on a timer so that quiet periods do not leave appends unsynced.
    pub fn sync_if_due(&mut self) -> Result<(), JournalError> {
        if let FsyncPolicy::EveryMs(ms) = self.options.fsync
            && self.dirty
            && self.last_sync.elapsed() >= Duration::from_millis(ms)
        {
            self.sync_active()?;
        }
        Ok(())
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a journal always has a segment")
    }

    fn sync_active(&mut self) -> Result<(), JournalError> {
        let path = &self.segments.last().expect("a journal always has a segment").path;
        self.file.sync_data().map_err(io_at(path))?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the active segment (synced unless the policy is `Never`) and starts a new one at
    /// the next sequence number.
    fn rotate(&mut self) -> Result<(), JournalError> {
        if self.options.fsync != FsyncPolicy::Never {
            self.sync_active()?;
        }
        let (seg, file) = create_segment(&self.dir, self.next, self.options.fsync)?;
        self.segments.push(seg);
        self.file = file;
        Ok(())
    }

    /// Deletes segments whose entries are all acknowledged. The active segment is replaced by a
    /// fresh one first, so a crash in between leaves either the old segment (all acknowledged,
    /// deleted on the next open) or the new one.
    fn reclaim(&mut self) -> Result<(), JournalError> {
        let active_done = {
            let a = self.active();
            !a.is_empty() && a.last <= self.acked
        };
        if active_done {
            // No sync of the old segment: it is deleted below.
            let (seg, file) = create_segment(&self.dir, self.next, self.options.fsync)?;
            self.segments.push(seg);
            self.file = file;
            self.dirty = false;
        }
        let acked = self.acked;
        let count = self.segments.len();
        let mut keep = Vec::with_capacity(count);
        let mut removed = false;
        for (i, seg) in self.segments.drain(..).enumerate() {
            let is_active = i + 1 == count;
            if !is_active && seg.last <= acked {
                fs::remove_file(&seg.path).map_err(io_at(&seg.path))?;
                removed = true;
            } else {
                keep.push(seg);
            }
        }
        self.segments = keep;
        // An undurable delete only brings back a segment the next open deletes again, but the
        // directory is synced anyway so the space is reliably given back.
        if removed && self.options.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Best effort: an error here has no one to report to, and the entries are already with
        // the operating system.
        let _ = self.sync();
    }
}

/// Reads the checkpoint; a missing file means nothing was acknowledged.
fn read_checkpoint(path: &Path) -> Result<u64, JournalError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(bad_checkpoint(path, "not UTF-8 text".to_string()));
        }
        Err(e) => return Err(io_at(path)(e)),
    };
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| bad_checkpoint(path, format!("{text:?} does not end in a newline")))?;
    let number = line
        .strip_prefix("acked ")
        .ok_or_else(|| bad_checkpoint(path, format!("{line:?} is not `acked <seq>`")))?;
    number
        .parse::<u64>()
        .map_err(|e| bad_checkpoint(path, format!("{number:?} is not a sequence number: {e}")))
}

/// Segment files in `dir` as (first seq, path), ordered by first seq.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir).map_err(io_at(dir))? {
        let item = item.map_err(io_at(dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        let first = digits
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0 && digits.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                corrupt(
                    &item.path(),
                    0,
                    "the segment's name does not end in a positive sequence number".to_string(),
                )
            })?;
        out.push((first, item.path()));
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first:020}{SEGMENT_SUFFIX}"))
}

/// Creates an empty segment (just the magic) for records starting at `first`.
fn create_segment(dir: &Path, first: u64, fsync: FsyncPolicy) -> Result<(Segment, File), JournalError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_at(&path))?;
    file.write_all(MAGIC).map_err(io_at(&path))?;
    if fsync != FsyncPolicy::Never {
        file.sync_data().map_err(io_at(&path))?;
        sync_dir(dir)?;
    }
    let seg = Segment {
        first,
        path,
        bytes: MAGIC.len() as u64,
        last: first - 1,
    };
    Ok((seg, file))
}

fn open_for_append(path: &Path, bytes: u64) -> Result<File, JournalError> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(io_at(path))?;
    file.seek(SeekFrom::Start(bytes)).map_err(io_at(path))?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    // Not every platform can fsync a directory; where it cannot, there is nothing more to do.
    if let Ok(d) = File::open(dir) {
        d.sync_all().map_err(io_at(dir))?;
    }
    Ok(())
}

fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(limit).read_to_end(&mut bytes))
        .map_err(io_at(path))?;
    Ok(bytes)
}

/// Reads and checks one segment found at open, pushing its entries above `acked` to
/// `pending`. In the last segment a torn tail is cut off; anywhere else damage is an error.
fn scan_segment(
    path: &Path,
    first: u64,
    is_last: bool,
    acked: u64,
    pending: &mut Vec<Entry>,
) -> Result<Segment, JournalError> {
    let bytes = fs::read(path).map_err(io_at(path))?;
    let mut seg = Segment {
        first,
        path: path.to_path_buf(),
        bytes: bytes.len() as u64,
        last: first - 1,
    };
    // Only a crash while the segment was being created leaves a cut-short header, or (after
    // power loss) a file of zeros; it held no record yet.
    let unwritten = bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) || bytes.iter().all(|&b| b == 0);
    if is_last && unwritten {
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io_at(path))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_data())
            .map_err(io_at(path))?;
        seg.bytes = MAGIC.len() as u64;
        return Ok(seg);
    }
    if bytes.len() < MAGIC.len() {
        return Err(corrupt(
            path,
            0,
            format!("{} bytes, too short for the segment header", bytes.len()),
        ));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(
            path,
            0,
            "not a journal segment (wrong magic bytes)".to_string(),
        ));
    }
    let mut offset = MAGIC.len();
    while offset < bytes.len() {
        match decode_at(&bytes, offset) {
            Ok((seq, entry, end)) => {
                if seq != seg.last + 1 {
                    return Err(corrupt(
                        path,
                        offset as u64,
                        format!("record has seq {seq}, expected {}", seg.last + 1),
                    ));
                }
                if seq > acked {
                    pending.push(entry);
                }
                seg.last = seq;
                offset = end;
            }
            Err(reason) => {
                if is_last && is_torn_tail(&bytes, offset) {
                    let file = OpenOptions::new().write(true).open(path).map_err(io_at(path))?;
                    file.set_len(offset as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(io_at(path))?;
                    seg.bytes = offset as u64;
                    break;
                }
                return Err(corrupt(path, offset as u64, reason));
            }
        }
    }
    Ok(seg)
}

/// Whether the bad record at `offset` can be what a crash in the middle of an append leaves:
/// fewer bytes than the smallest record, zeros to the end, or a plausible length that reaches
/// the end of the file or past it (a record cut short, or a final record that does not check
/// out). A length no writer would produce is not taken for a torn tail: it may be a damaged
/// record with good ones behind it.
fn is_torn_tail(bytes: &[u8], offset: usize) -> bool {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER + MIN_PAYLOAD || rest.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    (MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) && len + RECORD_HEADER >= rest.len()
}

/// Encodes one record (header and payload) for `entry` with sequence number `seq`.
fn encode(seq: u64, entry: &Entry) -> Result<Vec<u8>, JournalError> {
    let strings = 2 + 2 * entry.fields.len();
    let text: usize =
        entry.stream.len() + entry.id.len() + entry.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let payload_len = 8 + 4 + 4 * strings + text;
    if payload_len > MAX_PAYLOAD {
        return Err(JournalError::TooLarge {
            stream: entry.stream.clone(),
            id: entry.id.clone(),
            bytes: payload_len as u64,
            max: MAX_PAYLOAD as u64,
        });
    }
    let mut out = Vec::with_capacity(RECORD_HEADER + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    put_str(&mut out, &entry.stream);
    put_str(&mut out, &entry.id);
    out.extend_from_slice(&(entry.fields.len() as u32).to_le_bytes());
    for (k, v) in &entry.fields {
        put_str(&mut out, k);
        put_str(&mut out, v);
    }
    debug_assert_eq!(out.len(), RECORD_HEADER + payload_len);
    let crc = crc32(&out[RECORD_HEADER..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths fit: the whole payload is checked against MAX_PAYLOAD first.
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes the record at `offset`: its seq, entry and end offset, or why it is bad.
fn decode_at(bytes: &[u8], offset: usize) -> Result<(u64, Entry, usize), String> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER {
        return Err(format!("{} bytes left, too few for a record header", rest.len()));
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Err(format!(
            "record length {len} is outside {MIN_PAYLOAD} ..= {MAX_PAYLOAD}"
        ));
    }
    let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Err(format!(
            "record length {len} reaches past the end of the file ({} bytes left)",
            rest.len() - RECORD_HEADER
        ));
    };
    let actual = crc32(payload);
    if actual != crc {
        return Err(format!("CRC mismatch: stored {crc:08x}, computed {actual:08x}"));
    }
    let mut r = Reader { buf: payload };
    let seq = r.u64()?;
    let stream = r.string()?;
    let id = r.string()?;
    let count = r.u32()? as usize;
    // Each field takes at least 8 bytes, which bounds the allocation below.
    if count > r.buf.len() / 8 {
        return Err(format!("field count {count} does not fit in the record"));
    }
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let k = r.string()?;
        let v = r.string()?;
        fields.push((k, v));
    }
    if !r.buf.is_empty() {
        return Err(format!("{} stray bytes after the last field", r.buf.len()));
    }
    Ok((seq, Entry { stream, id, fields }, offset + RECORD_HEADER + len))
}

/// A cursor over a payload whose CRC already checked out; a failure here means a record
/// written by something other than this module.
struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "record payload ends early: wanted {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("string is not UTF-8: {e}"))
    }
}

/// CRC-32 with the IEEE 802.3 polynomial (reflected 0xEDB88320), as zlib computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> JournalError {
    JournalError::Corrupt {
        segment: path.to_path_buf(),
        offset,
        reason,
    }
}

fn bad_checkpoint(path: &Path, reason: String) -> JournalError {
    JournalError::BadCheckpoint {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The check value every CRC-32/ISO-HDLC implementation gives for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        let entry = Entry {
            stream: "fills".to_string(),
            id: "1700000000000-0".to_string(),
            fields: vec![
                ("price".to_string(), "62650.2".to_string()),
                (String::new(), "ünïcode".to_string()),
            ],
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend(encode(42, &entry).expect("encodes"));
        let (seq, back, end) = decode_at(&bytes, MAGIC.len()).expect("decodes");
        assert_eq!((seq, back, end), (42, entry, bytes.len()));
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let entry = Entry {
            stream: "orders".to_string(),
            id: "1-0".to_string(),
            fields: vec![],
        };
        let mut bytes = encode(1, &entry).expect("encodes");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        let err = decode_at(&bytes, 0).expect_err("corrupt");
        assert!(err.contains("CRC mismatch"), "{err}");
    }
}

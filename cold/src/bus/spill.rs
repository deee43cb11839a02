//! A [`Spill`] on top of the [`Journal`]: orders, fills and PnL survive a crash of the process
//! until Redis has them.
//!
//! [`JournalSpill`] is a write-ahead spill ([`Spill::write_ahead`]): every never-drop entry is
//! appended to the journal before it enters the publisher's queue, and stays pending there until
//! Redis has answered it (written, already present, or refused for good). At the next start,
//! [`JournalSpill::open`] holds the entries still pending, in order, and
//! [`super::publish::Publisher::spawn_with_spill`] publishes them before anything new.
//! Entries that did reach Redis before a crash come back as duplicates and are counted as such
//! (their ids are not above the stream's top), so the replay never writes an entry twice.
//!
//! The publisher calls the spill with its queue locked, so the blocking file I/O here is kept
//! short: an append is one `write` of one record (plus an `fsync` when the policy says so), and
//! the acknowledgement checkpoint (an atomic file replace, synced) is written at most every
//! [`ACK_EVERY`] and when the spill is dropped. Entries answered since the last checkpoint are
//! re-sent after a crash and refused by Redis as duplicates: harmless.
//!
//! # What the fsync policy guarantees
//!
//! Every policy keeps an appended entry through a crash of the process: the record has reached
//! the operating system when the publisher queues the entry. They differ on power loss or a
//! kernel crash:
//! - [`JournalFsync::Always`]: nothing appended is lost; one `fsync` per order, fill or PnL entry.
//! - [`JournalFsync::EveryMs`]`(n)`: at most the entries appended in the last `n` ms are lost. A
//!   background thread syncs outstanding appends every `n` ms, so a quiet period after a burst
//!   does not leave the burst unsynced.
//! - [`JournalFsync::Never`]: the operating system writes back when it chooses (on Linux
//!   typically within 30 s); power loss can lose any entry not yet written back.
//!
//! When an append fails (the journal is full or the disk refuses), the entry is kept in memory
//! and still published, the failure is logged and counted ([`JournalSpill::unjournaled`]): the
//! entry is not lost unless the process also crashes before Redis has it.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::Entry;
use super::entry::EntryId;
use super::journal::{FsyncPolicy, Journal, JournalError};
use super::publish::Spill;
use crate::config::JournalFsync;

/// Longest time between two acknowledgement checkpoints while entries are being answered.
pub const ACK_EVERY: Duration = Duration::from_millis(100);

/// The journal policy for a configured `redis.journal_fsync`.
pub const fn fsync_policy(fsync: JournalFsync) -> FsyncPolicy {
    match fsync {
        JournalFsync::Always => FsyncPolicy::Always,
        JournalFsync::EveryMs(ms) => FsyncPolicy::EveryMs(ms),
        JournalFsync::Never => FsyncPolicy::Never,
    }
}

/// An entry handed to the publisher and not yet answered by Redis.
#[derive(Debug)]
struct InFlight {
    /// Its journal sequence number; `None` if the append failed.
    seq: Option<u64>,
    stream: String,
    id: String,
    answered: bool,
}

/// A write-ahead [`Spill`] backed by a [`Journal`]; see the module doc.
#[derive(Debug)]
pub struct JournalSpill {
    journal: Arc<Mutex<Journal>>,
    /// Journaled, not yet handed to the publisher, oldest first.
    waiting: VecDeque<(Option<u64>, Entry)>,
    /// Handed to the publisher, in hand-out order.
    in_flight: VecDeque<InFlight>,
    /// Highest sequence number whose entry and all before it were answered.
    done: u64,
    /// When the checkpoint was last written.
    last_ack: Instant,
    unjournaled: Arc<AtomicU64>,
}

impl JournalSpill {
    /// Opens (creating if needed) the journal in `dir`; the entries it holds from an earlier run
    /// come first. For [`JournalFsync::EveryMs`] starts the thread that syncs on time.
    pub fn open(dir: &Path, fsync: JournalFsync) -> Result<Self, JournalError> {
        let (journal, pending) = Journal::open(dir, fsync_policy(fsync))?;
        let first = journal.acked() + 1;
        let done = journal.acked();
        let waiting = (first..).zip(pending).map(|(seq, e)| (Some(seq), e)).collect();
        let journal = Arc::new(Mutex::new(journal));
        if let JournalFsync::EveryMs(ms) = fsync {
            let weak = Arc::downgrade(&journal);
            std::thread::Builder::new()
                .name("journal-sync".to_string())
                .spawn(move || sync_on_time(&weak, Duration::from_millis(ms)))
                .map_err(|e| JournalError::Io {
                    path: dir.to_path_buf(),
                    source: e,
                })?;
        }
        Ok(Self {
            journal,
            waiting,
            in_flight: VecDeque::new(),
            done,
            last_ack: Instant::now(),
            unjournaled: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Per stream, the highest id among the entries waiting from an earlier run: new ids must
    /// go above it, as above the stream's top in Redis.
    pub fn pending_tops(&self) -> BTreeMap<String, EntryId> {
        let mut tops: BTreeMap<String, EntryId> = BTreeMap::new();
        for (_, e) in &self.waiting {
            let Ok(id) = e.id.parse::<EntryId>() else { continue };
            let top = tops.entry(e.stream.clone()).or_default();
            *top = (*top).max(id);
        }
        tops
    }

    /// The entries waiting from an earlier run, oldest first (the Portfolio applies their
    /// fills and payouts at its rebuild, before Redis has them).
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.waiting.iter().map(|(_, e)| e)
    }

    /// A counter of entries the journal could not take (kept in memory instead).
    pub fn unjournaled(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.unjournaled)
    }

    fn journal(&self) -> MutexGuard<'_, Journal> {
        // A panic while appending leaves at worst a torn record, which the journal itself
        // recognises; the handle stays usable.
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkpoint(&mut self) {
        let done = self.done;
        let result = {
            let mut j = self.journal();
            if done <= j.acked() {
                return;
            }
            j.ack_through(done)
        };
        self.last_ack = Instant::now();
        if let Err(e) = result {
            error!(error = %e, seq = done, "bus journal: acknowledgement not saved; the entries will be re-sent after a restart");
        }
    }
}

impl Spill for JournalSpill {
    fn push(&mut self, entry: Entry) {
        let appended = self.journal().append(&entry);
        let seq = match appended {
            Ok(seq) => Some(seq),
            Err(e) => {
                let n = self.unjournaled.fetch_add(1, Ordering::Relaxed);
                // One line per failure would flood the log while the disk stays full.
                if n.is_power_of_two() || n == 0 {
                    warn!(error = %e, stream = %entry.stream, id = %entry.id, unjournaled = n + 1, "bus journal refused an entry; it waits in memory only");
                }
                None
            }
        };
        self.waiting.push_back((seq, entry));
    }

    fn pop(&mut self) -> Option<Entry> {
        let (seq, entry) = self.waiting.pop_front()?;
        self.in_flight.push_back(InFlight {
            seq,
            stream: entry.stream.clone(),
            id: entry.id.clone(),
            answered: false,
        });
        Some(entry)
    }

    fn len(&self) -> usize {
        self.waiting.len()
    }

    fn write_ahead(&self) -> bool {
        true
    }

    fn answered(&mut self, entry: &Entry) {
        if let Some(f) = self
            .in_flight
            .iter_mut()
            .find(|f| !f.answered && f.stream == entry.stream && f.id == entry.id)
        {
            f.answered = true;
        }
        // Only a prefix with no gap may be acknowledged: the journal forgets everything up to
        // the checkpoint.
        while self.in_flight.front().is_some_and(|f| f.answered) {
            if let Some(seq) = self.in_flight.pop_front().and_then(|f| f.seq) {
                self.done = self.done.max(seq);
            }
        }
        if self.last_ack.elapsed() >= ACK_EVERY {
            self.checkpoint();
        }
    }
}

impl Drop for JournalSpill {
    fn drop(&mut self) {
        self.checkpoint();
    }
}

fn sync_on_time(journal: &Weak<Mutex<Journal>>, every: Duration) {
    loop {
        std::thread::sleep(every);
        let Some(journal) = journal.upgrade() else { return };
        let mut j = journal.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = j.sync_if_due() {
            error!(error = %e, "bus journal: sync failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("maxx-spill-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fill(ms: u64) -> Entry {
        Entry {
            stream: "fills".to_string(),
            id: format!("{ms}-0"),
            fields: vec![("order_id".to_string(), ms.to_string())],
        }
    }

    #[test]
    fn unanswered_entries_come_back_in_order_after_a_restart() {
        let dir = Dir::new("restart");
        {
            let mut spill = JournalSpill::open(&dir.0, JournalFsync::Always).unwrap();
            for ms in 1..=4 {
                spill.push(fill(ms));
            }
            let handed: Vec<Entry> = std::iter::from_fn(|| spill.pop()).take(3).collect();
            assert_eq!(handed, [fill(1), fill(2), fill(3)]);
            // 1 and 3 answered, 2 not: only 1 may be forgotten.
            spill.answered(&fill(1));
            spill.answered(&fill(3));
            assert_eq!(spill.len(), 1);
        }
        let mut spill = JournalSpill::open(&dir.0, JournalFsync::Always).unwrap();
        assert_eq!(spill.pending_tops()["fills"], EntryId { ms: 4, seq: 0 });
        let back: Vec<Entry> = std::iter::from_fn(|| spill.pop()).collect();
        assert_eq!(back, [fill(2), fill(3), fill(4)]);
        for e in &back {
            spill.answered(e);
        }
        drop(spill);
        let mut spill = JournalSpill::open(&dir.0, JournalFsync::EveryMs(5)).unwrap();
        assert!(spill.pop().is_none(), "everything answered is forgotten");
        assert!(spill.pending_tops().is_empty());
    }

    #[test]
    fn a_spill_that_cannot_open_says_where() {
        let dir = Dir::new("file");
        std::fs::write(&dir.0, b"not a directory").unwrap();
        let err = JournalSpill::open(&dir.0, JournalFsync::Never).unwrap_err();
        assert!(err.to_string().contains(&*dir.0.to_string_lossy()), "{err}");
        let _ = std::fs::remove_file(&dir.0);
    }
}

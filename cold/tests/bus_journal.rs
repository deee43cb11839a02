//! The bus journal on real files: pending entries across reopen, torn tails, corruption,
//! segment rotation and deletion, the size cap, and a writer SIGKILLed mid-stream.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use maxx_cold::bus::Entry;
use maxx_cold::bus::journal::{FsyncPolicy, Journal, JournalError, JournalOptions};
use proptest::prelude::*;

/// Set in the child process of the crash test: the journal directory it appends to.
const CRASH_CHILD_ENV: &str = "MAXX_JOURNAL_CRASH_CHILD_DIR";
/// The child reports progress every this many appends.
const CRASH_REPORT_EVERY: u64 = 25;

/// A directory under the test target's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("bus_journal")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the test directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `i`-th entry of a test stream; every entry is distinct.
fn entry(i: u64) -> Entry {
    Entry {
        stream: "fills".to_string(),
        id: format!("{}-0", 1_700_000_000_000u64 + i),
        fields: vec![
            ("key".to_string(), format!("0190c1f4-0000-7000-8000-{i:012}")),
            ("price".to_string(), "62650.2".to_string()),
            ("qty".to_string(), i.to_string()),
        ],
    }
}

fn entries(range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(entry).collect()
}

/// The segment files of a journal directory, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list the journal directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("journal-") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    files
}

fn small_segments(fsync: FsyncPolicy) -> JournalOptions {
    JournalOptions {
        fsync,
        segment_bytes: 400,
        max_bytes: 1 << 20,
    }
}

#[test]
fn append_ack_reopen_returns_exactly_the_unacknowledged_entries_in_order() {
    let dir = TempDir::new("reopen");
    {
        let (mut journal, pending) = Journal::open(&dir.0, FsyncPolicy::Always).expect("open");
        assert!(pending.is_empty());
        for (i, e) in entries(0..10).iter().enumerate() {
            assert_eq!(journal.append(e).expect("append"), i as u64 + 1);
        }
        journal.ack_through(4).expect("ack");
        assert_eq!(journal.pending(), 6);
        // Acknowledging again, or below the point, changes nothing.
        journal.ack_through(2).expect("ack below");
        journal.ack_through(4).expect("ack again");
        assert_eq!(journal.pending(), 6);
    }
    let (mut journal, pending) = Journal::open(&dir.0, FsyncPolicy::Batch).expect("reopen");
    assert_eq!(pending, entries(4..10));
    assert_eq!((journal.acked(), journal.last_seq()), (4, 10));
    // Sequence numbers continue where they stood.
    assert_eq!(journal.append(&entry(10)).expect("append"), 11);
    journal.sync().expect("sync");
    let replay = journal.read(0, 100).expect("read");
    let seqs: Vec<u64> = replay.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (5..=11).collect::<Vec<_>>());
    assert_eq!(replay.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), entries(4..11));
    assert_eq!(journal.read(7, 2).expect("read").len(), 2);
    journal.ack_through(11).expect("ack all");
    drop(journal);
    let (journal, pending) = Journal::open(&dir.0, FsyncPolicy::Never).expect("reopen");
    assert!(pending.is_empty());
    assert_eq!((journal.acked(), journal.last_seq(), journal.pending()), (11, 11, 0));
}

#[test]
fn acknowledging_past_the_last_append_is_refused() {
    let dir = TempDir::new("ack-beyond");
    let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Never).expect("open");
    journal.append(&entry(0)).expect("append");
    let err = journal.ack_through(2).expect_err("beyond the end");
    assert!(matches!(err, JournalError::AckBeyondEnd { seq: 2, last: 1 }), "{err}");
    assert_eq!(journal.pending(), 1);
}

#[test]
fn a_record_cut_short_at_the_end_is_dropped_and_the_segment_repaired() {
    let dir = TempDir::new("torn");
    let before_last;
    {
        let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Always).expect("open");
        for e in entries(0..4) {
            journal.append(&e).expect("append");
        }
        before_last = journal.used_bytes();
        journal.append(&entry(4)).expect("append");
    }
    let segment = segment_files(&dir.0).pop().expect("a segment");
    let full = fs::metadata(&segment).expect("stat").len();
    // A crash partway through writing the last record.
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(full - 3))
        .expect("truncate");

    let (mut journal, pending) = Journal::open(&dir.0, FsyncPolicy::Always).expect("reopen");
    assert_eq!(pending, entries(0..4));
    assert_eq!(fs::metadata(&segment).expect("stat").len(), before_last);
    // The repaired segment takes appends again, with the torn entry's sequence number.
    assert_eq!(journal.append(&entry(99)).expect("append"), 5);
    drop(journal);
    let (_, pending) = Journal::open(&dir.0, FsyncPolicy::Always).expect("reopen");
    let mut expected = entries(0..4);
    expected.push(entry(99));
    assert_eq!(pending, expected);
}

#[test]
fn garbage_or_zeros_after_the_last_record_are_dropped() {
    for tail in [b"\x93garbage-tail\xff\x00".to_vec(), vec![0u8; 4096]] {
        let dir = TempDir::new("garbage");
        let clean;
        {
            let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Always).expect("open");
            for e in entries(0..3) {
                journal.append(&e).expect("append");
            }
            clean = journal.used_bytes();
        }
        let segment = segment_files(&dir.0).pop().expect("a segment");
        OpenOptions::new()
            .append(true)
            .open(&segment)
            .and_then(|mut f| f.write_all(&tail))
            .expect("append the tail");

        let (_, pending) = Journal::open(&dir.0, FsyncPolicy::Always).expect("reopen");
        assert_eq!(pending, entries(0..3));
        assert_eq!(fs::metadata(&segment).expect("stat").len(), clean);
    }
}

/// A crash while a new segment is created can leave its header cut short, or (after power
/// loss) zeros; the segment held no record yet and is rewritten.
#[test]
fn a_new_segment_with_an_unwritten_header_is_repaired() {
    for header in [b"MXJ".to_vec(), vec![0u8; 8], Vec::new()] {
        let dir = TempDir::new("header");
        {
            let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Always).expect("open");
            for e in entries(0..3) {
                journal.append(&e).expect("append");
            }
            journal.ack_through(3).expect("ack");
        }
        let segment = segment_files(&dir.0).pop().expect("a segment");
        fs::write(&segment, &header).expect("write");

        let (mut journal, pending) = Journal::open(&dir.0, FsyncPolicy::Always).expect("reopen");
        assert!(pending.is_empty());
        assert_eq!(journal.append(&entry(3)).expect("append"), 4);
        drop(journal);
        let (_, pending) = Journal::open(&dir.0, FsyncPolicy::Always).expect("reopen");
        assert_eq!(pending, entries(3..4));
    }
}

#[test]
fn a_bad_crc_in_the_middle_is_reported_with_segment_and_offset() {
    let dir = TempDir::new("crc");
    let second_record;
    {
        let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Always).expect("open");
        journal.append(&entry(0)).expect("append");
        second_record = journal.used_bytes();
        for e in entries(1..4) {
            journal.append(&e).expect("append");
        }
    }
    let segment = segment_files(&dir.0).pop().expect("a segment");
    let mut bytes = fs::read(&segment).expect("read");
    // A flipped bit in the second record's payload (past its 8-byte header).
    bytes[second_record as usize + 20] ^= 0x04;
    fs::write(&segment, &bytes).expect("write");

    let err = Journal::open(&dir.0, FsyncPolicy::Always).expect_err("corrupt");
    match &err {
        JournalError::Corrupt {
            segment: s,
            offset,
            reason,
        } => {
            assert_eq!(s, &segment);
            assert_eq!(*offset, second_record);
            assert!(reason.contains("CRC mismatch"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(&segment.display().to_string()), "{text}");
    assert!(text.contains(&format!("byte {second_record}")), "{text}");
    // Nothing was repaired behind the operator's back.
    assert_eq!(fs::read(&segment).expect("read"), bytes);
}

#[test]
fn damage_in_an_earlier_segment_is_never_taken_for_a_torn_tail() {
    let dir = TempDir::new("earlier");
    {
        let (mut journal, _) = Journal::open_with(&dir.0, small_segments(FsyncPolicy::Always)).expect("open");
        for e in entries(0..20) {
            journal.append(&e).expect("append");
        }
        assert!(journal.segments() >= 3);
    }
    let first = segment_files(&dir.0).remove(0);
    let len = fs::metadata(&first).expect("stat").len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .and_then(|f| f.set_len(len - 5))
        .expect("truncate");
    let err =
        Journal::open_with(&dir.0, small_segments(FsyncPolicy::Always)).expect_err("an earlier segment cut short");
    assert!(
        matches!(&err, JournalError::Corrupt { segment, .. } if segment == &first),
        "{err}"
    );
}

#[test]
fn a_missing_segment_with_pending_entries_is_reported() {
    let dir = TempDir::new("missing");
    {
        let (mut journal, _) = Journal::open_with(&dir.0, small_segments(FsyncPolicy::Never)).expect("open");
        for e in entries(0..20) {
            journal.append(&e).expect("append");
        }
    }
    let files = segment_files(&dir.0);
    assert!(files.len() >= 3);
    fs::remove_file(&files[1]).expect("remove a middle segment");
    let err = Journal::open_with(&dir.0, small_segments(FsyncPolicy::Never)).expect_err("entries missing");
    match &err {
        JournalError::Corrupt { segment, reason, .. } => {
            assert_eq!(segment, &files[2]);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

/// Under a policy weaker than `Always`, power loss can keep an acknowledgement (always synced)
/// while losing appends before it: the journal resumes after the acknowledged point and never
/// reuses a sequence number.
#[test]
fn a_checkpoint_ahead_of_the_surviving_records_resumes_after_it() {
    let dir = TempDir::new("power-loss");
    let after_three;
    {
        let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Never).expect("open");
        for e in entries(0..3) {
            journal.append(&e).expect("append");
        }
        after_three = journal.used_bytes();
        for e in entries(3..10) {
            journal.append(&e).expect("append");
        }
        journal.ack_through(5).expect("ack");
    }
    let segment = segment_files(&dir.0).pop().expect("a segment");
    // Records 4 ..= 10 never reached the disk.
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(after_three))
        .expect("truncate");

    let (mut journal, pending) = Journal::open(&dir.0, FsyncPolicy::Never).expect("reopen");
    assert!(pending.is_empty());
    assert_eq!((journal.acked(), journal.last_seq()), (5, 5));
    // The stale segment, all acknowledged, is gone.
    assert_eq!(
        segment_files(&dir.0),
        vec![dir.0.join(format!("journal-{:020}.log", 6))]
    );
    assert_eq!(journal.append(&entry(42)).expect("append"), 6);
    drop(journal);
    let (_, pending) = Journal::open(&dir.0, FsyncPolicy::Never).expect("reopen");
    assert_eq!(pending, vec![entry(42)]);
}

#[test]
fn a_damaged_checkpoint_is_a_clear_error() {
    let dir = TempDir::new("checkpoint");
    fs::write(dir.0.join("checkpoint"), "acked twelve\n").expect("write");
    let err = Journal::open(&dir.0, FsyncPolicy::Never).expect_err("bad checkpoint");
    assert!(matches!(err, JournalError::BadCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("twelve"), "{err}");
}

#[test]
fn segments_rotate_and_are_deleted_once_acknowledged() {
    let dir = TempDir::new("rotate");
    let options = small_segments(FsyncPolicy::EveryMs(5));
    let (mut journal, _) = Journal::open_with(&dir.0, options).expect("open");
    for e in entries(0..30) {
        journal.append(&e).expect("append");
    }
    let files = segment_files(&dir.0);
    assert_eq!(files.len(), journal.segments());
    assert!(files.len() >= 4, "{} segments", files.len());
    for f in &files {
        assert!(fs::metadata(f).expect("stat").len() <= options.segment_bytes);
    }
    let on_disk: u64 = files.iter().map(|f| fs::metadata(f).expect("stat").len()).sum();
    assert_eq!(on_disk, journal.used_bytes());

    // Acknowledging through the end of the second segment deletes exactly the first two.
    let third_starts: u64 = files[2]
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("journal-"))
        .and_then(|n| n.strip_suffix(".log"))
        .and_then(|n| n.parse().ok())
        .expect("a segment named for its first sequence number");
    let second_ends = third_starts - 1;
    journal.ack_through(second_ends).expect("ack");
    assert_eq!(segment_files(&dir.0), files[2..].to_vec());

    // Acknowledging everything leaves one empty segment, named for the next sequence number.
    journal.ack_through(30).expect("ack all");
    assert_eq!(journal.segments(), 1);
    assert_eq!(
        segment_files(&dir.0),
        vec![dir.0.join(format!("journal-{:020}.log", 31))]
    );
    assert_eq!(journal.append(&entry(30)).expect("append"), 31);
    journal.sync_if_due().expect("sync");
    drop(journal);
    let (_, pending) = Journal::open_with(&dir.0, options).expect("reopen");
    assert_eq!(pending, entries(30..31));
}

#[test]
fn the_cap_refuses_appends_until_acknowledgements_free_space() {
    let dir = TempDir::new("cap");
    let options = JournalOptions {
        fsync: FsyncPolicy::Batch,
        segment_bytes: 400,
        max_bytes: 1200,
    };
    let (mut journal, _) = Journal::open_with(&dir.0, options).expect("open");
    let mut appended = 0;
    let err = loop {
        match journal.append(&entry(appended)) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 1000, "the cap never applied");
    };
    let used = journal.used_bytes();
    match err {
        JournalError::Full { used: u, needed, cap } => {
            assert_eq!((u, cap), (used, 1200));
            assert!(u + needed > cap);
        }
        other => panic!("expected Full, got {other}"),
    }
    assert!(used <= options.max_bytes);
    // A refused append writes nothing and takes no sequence number.
    assert_eq!(journal.last_seq(), appended);
    assert!(journal.append(&entry(appended)).is_err());
    assert_eq!(journal.used_bytes(), used);

    journal.ack_through(appended).expect("ack all");
    assert_eq!(journal.append(&entry(appended)).expect("append"), appended + 1);
    journal.sync().expect("sync");
    drop(journal);
    let (_, pending) = Journal::open_with(&dir.0, options).expect("reopen");
    assert_eq!(pending, entries(appended..appended + 1));
}

#[test]
fn an_entry_too_large_for_any_record_is_refused() {
    let dir = TempDir::new("too-large");
    let (mut journal, _) = Journal::open(&dir.0, FsyncPolicy::Never).expect("open");
    let mut big = entry(0);
    big.fields
        .push(("blob".to_string(), "x".repeat(maxx_cold::bus::journal::MAX_PAYLOAD)));
    let err = journal.append(&big).expect_err("too large");
    assert!(matches!(err, JournalError::TooLarge { .. }), "{err}");
    assert_eq!(journal.last_seq(), 0);
    drop(journal);

    // An entry that would not fit under the cap even alone is too large, not "full".
    let options = JournalOptions {
        fsync: FsyncPolicy::Never,
        segment_bytes: 256,
        max_bytes: 256,
    };
    let (mut journal, _) = Journal::open_with(&dir.0, options).expect("open");
    let mut wide = entry(0);
    wide.fields.push(("blob".to_string(), "x".repeat(300)));
    let err = journal.append(&wide).expect_err("too large");
    assert!(matches!(err, JournalError::TooLarge { max: 240, .. }), "{err}");
    assert_eq!(journal.append(&entry(0)).expect("a small entry fits"), 1);
}

#[test]
fn unworkable_options_are_refused() {
    let dir = TempDir::new("options");
    for (options, needle) in [
        (
            JournalOptions {
                fsync: FsyncPolicy::Always,
                segment_bytes: 10,
                max_bytes: 1 << 20,
            },
            "segment_bytes",
        ),
        (
            JournalOptions {
                fsync: FsyncPolicy::Always,
                segment_bytes: 4096,
                max_bytes: 1024,
            },
            "max_bytes",
        ),
        (JournalOptions::new(FsyncPolicy::EveryMs(0)), "0 ms"),
    ] {
        let err = Journal::open_with(&dir.0, options).expect_err("invalid");
        assert!(
            matches!(&err, JournalError::InvalidOptions(m) if m.contains(needle)),
            "{err}"
        );
    }
}

/// The child half of the crash test: appends distinct entries with `Always` and reports its
/// progress on stdout until it is killed (or the journal is full, where it waits to be killed).
fn crash_child(dir: &Path) -> ! {
    let options = JournalOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 16 << 10,
        max_bytes: 8 << 20,
    };
    let (mut journal, pending) = Journal::open_with(dir, options).expect("child: open");
    assert!(pending.is_empty(), "child: the journal must start empty");
    let mut stdout = std::io::stdout();
    for i in 0.. {
        match journal.append(&entry(i)) {
            Ok(_) => {}
            Err(JournalError::Full { .. }) => {
                writeln!(stdout, "full at {i}").expect("child: stdout");
                loop {
                    std::thread::park();
                }
            }
            Err(e) => panic!("child: append {i}: {e}"),
        }
        if (i + 1) % CRASH_REPORT_EVERY == 0 {
            writeln!(stdout, "appended {}", i + 1).expect("child: stdout");
            stdout.flush().expect("child: stdout");
        }
    }
    unreachable!("the child appends until it is killed")
}

#[test]
fn a_writer_killed_mid_stream_leaves_a_complete_prefix() {
    if let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) {
        crash_child(Path::new(&dir));
    }
    let dir = TempDir::new("crash");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "a_writer_killed_mid_stream_leaves_a_complete_prefix",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let mut reported = 0;
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    while reported < 500 {
        let line = match lines.next() {
            Some(line) => line.expect("read the child's stdout"),
            None => panic!(
                "the child exited after reporting {reported} appends: {:?}",
                child.wait()
            ),
        };
        if let Some(n) = line.strip_prefix("appended ") {
            reported = n.parse::<u64>().expect("a count");
        }
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    let options = JournalOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 16 << 10,
        max_bytes: 8 << 20,
    };
    let (mut journal, pending) = Journal::open_with(&dir.0, options).expect("reopen");
    let found = pending.len() as u64;
    assert!(found >= reported, "{found} entries, {reported} reported");
    assert_eq!(pending, entries(0..found), "a complete prefix, in order");
    assert_eq!(journal.append(&entry(found)).expect("append"), found + 1);
}

#[derive(Clone, Debug)]
enum Op {
    /// Append this many entries.
    Append(u8),
    /// Acknowledge this share (in 1/8ths) of what is pending.
    Ack(u8),
    /// Close and reopen; the caller acknowledges this share (in 1/8ths) of what came back.
    Reopen(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..12).prop_map(Op::Append),
        (0u8..=8).prop_map(Op::Ack),
        (0u8..=8).prop_map(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Over any sequence of appends, acknowledgements and reopens, a reopen returns exactly the
    /// entries appended and not acknowledged, in order, so an entry acknowledged after being
    /// returned is never returned again.
    #[test]
    fn no_entry_is_returned_twice_across_open_ack_reopen(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = TempDir::new("cycles");
        let options = JournalOptions {
            fsync: FsyncPolicy::Never,
            segment_bytes: 300,
            max_bytes: 1 << 20,
        };
        let (mut journal, pending) = Journal::open_with(&dir.0, options).expect("open");
        prop_assert!(pending.is_empty());
        let mut appended = 0u64;
        let mut acked = 0u64;
        let mut delivered_and_acked = HashSet::new();
        for op in ops {
            match op {
                Op::Append(n) => {
                    for _ in 0..n {
                        prop_assert_eq!(journal.append(&entry(appended)).expect("append"), appended + 1);
                        appended += 1;
                    }
                }
                Op::Ack(eighths) => {
                    let through = acked + (appended - acked) * u64::from(eighths) / 8;
                    journal.ack_through(through).expect("ack");
                    acked = acked.max(through);
                }
                Op::Reopen(eighths) => {
                    drop(journal);
                    let (reopened, pending) = Journal::open_with(&dir.0, options).expect("reopen");
                    journal = reopened;
                    prop_assert_eq!(&pending, &entries(acked..appended));
                    let take = pending.len() * usize::from(eighths) / 8;
                    for e in &pending[..take] {
                        prop_assert!(delivered_and_acked.insert(e.id.clone()), "{} returned twice", e.id);
                    }
                    let through = acked + take as u64;
                    journal.ack_through(through).expect("ack");
                    acked = through;
                }
            }
            prop_assert_eq!(journal.pending(), appended - acked);
            prop_assert_eq!(segment_files(&dir.0).len(), journal.segments());
        }
    }
}

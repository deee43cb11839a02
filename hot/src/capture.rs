//! The capture format: one venue frame per line, `<recv_ns> <raw frame as received>`.
//!
//! Lines starting with `#` are comments and blank lines are ignored; a `.gz` file (detected by
//! its magic bytes, not its name) is decompressed transparently. This is the line format of
//! public Binance captures such as hftbacktest's, so real recordings replay as they are.
//!
//! A capture is loaded whole into memory before replay starts, so the replaying hot thread
//! makes no file I/O. Lines that do not have the `<recv_ns> <frame>` shape are kept as
//! malformed entries (with their line number) so replay can count them instead of stopping.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

/// One line of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A frame and its receive time.
    Frame {
        /// Local receive time, ns since the epoch.
        recv_ns: u64,
        /// Byte range of the frame in [`Capture::text`].
        start: usize,
        /// End of the range.
        end: usize,
    },
    /// A line without a valid `<recv_ns> ` prefix (1-based line number).
    Malformed {
        /// Line number in the file.
        line: usize,
    },
}

/// A capture file held in memory.
#[derive(Debug, Default)]
pub struct Capture {
    text: Vec<u8>,
    lines: Vec<Line>,
}

impl Capture {
    /// Reads a capture file, gzip or plain.
    pub fn load(path: &Path) -> io::Result<Capture> {
        let mut raw = Vec::new();
        File::open(path)?.read_to_end(&mut raw)?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::with_capacity(raw.len() * 8);
            MultiGzDecoder::new(&raw[..]).read_to_end(&mut out)?;
            out
        } else {
            raw
        };
        Ok(Capture::from_bytes(text))
    }

    /// Indexes capture text already in memory.
    pub fn from_bytes(text: Vec<u8>) -> Capture {
        let mut lines = Vec::new();
        let mut start = 0;
        let mut number = 0;
        while start < text.len() {
            number += 1;
            let end = text[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |i| start + i);
            let mut line_end = end;
            if line_end > start && text[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            let line = &text[start..line_end];
            if !(line.is_empty() || line[0] == b'#') {
                lines.push(parse_line(line, start).unwrap_or(Line::Malformed { line: number }));
            }
            start = end + 1;
        }
        Capture { text, lines }
    }

    /// The indexed lines, comments and blanks excluded.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The bytes of a frame line.
    pub fn frame(&self, start: usize, end: usize) -> &[u8] {
        &self.text[start..end]
    }
}

fn parse_line(line: &[u8], offset: usize) -> Option<Line> {
    let space = line.iter().position(|&b| b == b' ')?;
    let digits = &line[..space];
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let recv_ns = digits
        .iter()
        .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
    let start = offset + space + 1;
    Some(Line::Frame {
        recv_ns,
        start,
        end: offset + line.len(),
    })
}

/// Appends one capture line for `frame` received at `recv_ns` to `out` (used by capture writers
/// and tests); the frame must not contain a newline.
pub fn write_line(out: &mut Vec<u8>, recv_ns: u64, frame: &[u8]) {
    out.extend_from_slice(recv_ns.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(frame);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_comments_and_malformed_lines() {
        let text = b"# header\n1 {\"a\":1}\n\nxyz {}\r\n2 {\"b\" : 2}\r\n3\n".to_vec();
        let c = Capture::from_bytes(text);
        let frames: Vec<_> = c
            .lines()
            .iter()
            .map(|l| match *l {
                Line::Frame { recv_ns, start, end } => {
                    format!("{recv_ns}:{}", String::from_utf8_lossy(c.frame(start, end)))
                }
                Line::Malformed { line } => format!("bad@{line}"),
            })
            .collect();
        assert_eq!(frames, ["1:{\"a\":1}", "bad@4", "2:{\"b\" : 2}", "bad@6"]);
    }

    #[test]
    fn gzip_is_read_transparently() {
        use std::io::Write;
        let mut plain = Vec::new();
        write_line(&mut plain, 17, b"{}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let dir = std::env::temp_dir().join(format!("maxx-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.txt"); // no .gz suffix: detection is by magic bytes
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let c = Capture::load(&path).unwrap();
        assert_eq!(
            c.lines(),
            &[Line::Frame {
                recv_ns: 17,
                start: 3,
                end: 5
            }]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

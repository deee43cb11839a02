//! `WsFeed` over a real loopback WebSocket with frames of every size it accepts: small frames
//! in a burst (many per socket read), frames of tens of KiB (up to
//! `MAX_FRAME_BYTES`), and small ones again after them. Every frame arrives whole, in order,
//! byte for byte.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maxx_hot::feed::MAX_FRAME_BYTES;
use maxx_hot::feed::ws::{Reconnect, WsFeed, WsTarget};
use maxx_hot::ids::Venue;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::source::{FrameSource, Next};
use tungstenite::Message;

/// A text frame of `len` bytes that names its position, so a lost or reordered frame shows.
fn frame(i: usize, len: usize) -> String {
    let head = format!("{{\"i\":{i},\"pad\":\"");
    let tail = "\"}";
    let pad = len - head.len() - tail.len();
    format!("{head}{}{tail}", "x".repeat(pad))
}

#[test]
fn large_frames_and_bursts_of_small_ones_arrive_whole_and_in_order() {
    // Bursts of small frames, then large frames up to the largest size accepted, each followed
    // by more small frames.
    let mut sizes: Vec<usize> = vec![300; 2_000];
    for big in [40_000, 50_000, MAX_FRAME_BYTES - 10, 60_000] {
        sizes.push(big);
        sizes.extend(std::iter::repeat_n(250, 500));
    }
    let frames: Vec<String> = sizes.iter().enumerate().map(|(i, &n)| frame(i, n)).collect();
    assert!(frames.iter().all(|f| f.len() <= MAX_FRAME_BYTES));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let to_send = frames.clone();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        for f in to_send {
            ws.write(Message::text(f)).unwrap();
        }
        ws.flush().unwrap();
        // Stay connected until the client has read everything and goes away.
        while ws.read().is_ok() {}
    });

    let reconnect = Reconnect {
        initial: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        stale_after: Duration::from_secs(30),
    };
    let target = WsTarget::resolve(&format!("ws://{addr}")).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let mut feed = WsFeed::new(target, Vec::new(), reconnect, Arc::clone(&stats)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0usize;
    while got < frames.len() {
        assert!(
            Instant::now() < deadline,
            "only {got} of {} frames arrived",
            frames.len()
        );
        match feed.next() {
            Next::Frame(bytes, _) => {
                assert!(
                    bytes == frames[got].as_bytes(),
                    "frame {got} ({} bytes expected) arrived as {} bytes starting {:?}",
                    frames[got].len(),
                    bytes.len(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
                );
                got += 1;
            }
            Next::Idle => std::thread::yield_now(),
            Next::Malformed | Next::Closed => panic!("the feed lost the stream after {got} frames"),
        }
    }
    assert_eq!(stats.connects.get(), 1, "one connection carried everything");
    feed.close();
    drop(feed);
    server.join().unwrap();
}

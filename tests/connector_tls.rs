//! `wss://`: the feed connector's TLS path against a real TLS WebSocket server on loopback,
//! with a certificate made for the test and trusted through `TlsConfig::with_roots`, and a
//! refusal when the certificate is not trusted.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maxx_hot::feed::ws::{Reconnect, TlsConfig, WsFeed, WsTarget};
use maxx_hot::ids::Venue;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::source::{FrameSource, Next};

/// A one-connection TLS WebSocket server that sends `frames` text messages and then waits for
/// the client to close.
fn serve(frames: usize) -> (u16, rcgen::CertifiedKey<rcgen::KeyPair>, std::thread::JoinHandle<()>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        // The first connection may be the untrusted client's, which fails the handshake.
        for stream in listener.incoming().take(2) {
            let Ok(stream) = stream else { continue };
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let tls = rustls::StreamOwned::new(conn, stream);
            let Ok(mut ws) = tungstenite::accept(tls) else { continue };
            for i in 0..frames {
                ws.send(tungstenite::Message::text(format!("{{\"n\":{i}}}"))).unwrap();
            }
            ws.flush().unwrap();
            // Wait for the client's close (or its disconnect).
            while ws.read().is_ok() {}
            return;
        }
    });
    (port, cert, handle)
}

fn reconnect() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(20),
        cap: Duration::from_millis(100),
        stale_after: Duration::from_secs(10),
    }
}

#[test]
fn wss_frames_arrive_through_tls_with_a_trusted_root() {
    let (port, cert, server) = serve(50);
    let target = WsTarget::resolve(&format!("wss://localhost:{port}/ws")).unwrap();
    assert!(target.tls);
    assert_eq!(target.host(), "localhost");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let mut feed = WsFeed::new(target, Vec::new(), reconnect(), Arc::clone(&stats))
        .unwrap()
        .with_tls(TlsConfig::with_roots(roots));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 50 {
        assert!(Instant::now() < deadline, "only {} frames over TLS", got.len());
        match feed.next() {
            Next::Frame(bytes, _) => got.push(String::from_utf8(bytes.to_vec()).unwrap()),
            Next::Idle => std::thread::yield_now(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got[0], "{\"n\":0}");
    assert_eq!(got[49], "{\"n\":49}");
    assert_eq!(stats.connects.get(), 1);
    feed.close();
    server.join().unwrap();
}

#[test]
fn an_untrusted_certificate_never_connects() {
    let (port, _cert, _server) = serve(1);
    let target = WsTarget::resolve(&format!("wss://localhost:{port}/ws")).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    // Mozilla roots do not include the test's self-signed certificate.
    let mut feed = WsFeed::new(target, Vec::new(), reconnect(), Arc::clone(&stats)).unwrap();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert!(
            matches!(feed.next(), Next::Idle),
            "no frame may arrive from an untrusted server"
        );
    }
    assert_eq!(stats.connects.get(), 0, "the TLS handshake must fail");
    feed.close();
}

//! Order-entry signing (`maxx_hot::gateway`) against the venues' documentation.
//!
//! Binance: every vector of `shared/fixtures/venues/binance/hmac_signing_vectors.json`, plus the
//! same docs example copied here so the check runs even when `shared/` is absent.
//! Bybit publishes no secret for its example, so its signatures are checked against a second,
//! plain HMAC-SHA256 written here from RFC 2104 over `ring::digest` (itself checked against
//! RFC 4231), on the docs' example strings and on random requests.
//! A counting `#[global_allocator]` (per thread, so parallel tests do not disturb each other)
//! shows that signing a prepared request allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use maxx_hot::gateway::sign::{self, HexSignature, Secret, SignError};
use maxx_hot::gateway::{binance, bybit};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Counting allocator.

/// Forwards to the system allocator, counting allocations made by the current thread.
struct CountingAlloc;

thread_local! {
    /// Allocations (including reallocations) made by this thread so far. Const-initialised and
    /// without a destructor, so touching it from inside the allocator never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` fails only while the thread is being torn down; those are not counted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards its arguments unchanged to `System`, so `System`'s guarantees
// are ours; the only extra work is a thread-local counter update, which does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// An independent HMAC-SHA256 (RFC 2104) and the plain String-building reference signers.

/// HMAC-SHA256 written out from RFC 2104 over `ring::digest::SHA256`, sharing no code with
/// `ring::hmac` or the gateway; lowercase hex.
fn reference_hmac_hex(key: &[u8], message: &[u8]) -> String {
    use ring::digest::{Context, SHA256, digest};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(digest(&SHA256, key).as_ref());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Context::new(&SHA256);
    inner.update(&k.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finish();
    let mut outer = Context::new(&SHA256);
    outer.update(&k.map(|b| b ^ 0x5c));
    outer.update(inner.as_ref());
    outer.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encoding written plainly: unreserved bytes as they are, the rest as `%XY`.
fn reference_percent_encode(value: &[u8]) -> String {
    value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sig_str(sig: &HexSignature) -> &str {
    sign::hex_str(sig)
}

// ---------------------------------------------------------------------------------------------
// Binance: the documentation's worked example.

const BINANCE_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

/// (query string, body, signature), copied from venues.md §1.9 (Binance rest-api.md, HMAC Keys).
const BINANCE_DOC_VECTORS: [(&str, &str, &str); 3] = [
    (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "",
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
    ),
    (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "",
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
    ),
    (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
    ),
];

/// Checks one Binance vector through every entry point: the bare signature, and the in-place
/// append onto the text that carries the parameters last (the body if any, else the query).
fn check_binance_vector(secret: &Secret, query: &str, body: &str, expected: &str) {
    assert_eq!(
        sig_str(&binance::signature(secret, query.as_bytes(), body.as_bytes())),
        expected
    );

    let (prefix, last) = if body.is_empty() { ("", query) } else { (query, body) };
    let mut buf = [0u8; 512];
    buf[..last.len()].copy_from_slice(last.as_bytes());
    let before = allocations();
    let len = binance::append_signature(secret, prefix.as_bytes(), &mut buf, last.len()).unwrap();
    assert_eq!(allocations(), before, "appending a signature allocated");
    assert_eq!(
        std::str::from_utf8(&buf[..len]).unwrap(),
        format!("{last}&signature={expected}")
    );

    // The independent reference agrees, which also checks the reference itself.
    assert_eq!(
        reference_hmac_hex(BINANCE_SECRET.as_bytes(), format!("{query}{body}").as_bytes()),
        expected
    );
}

#[test]
fn binance_docs_example_hard_coded() {
    let secret = Secret::from_bytes(BINANCE_SECRET.as_bytes());
    for (query, body, expected) in BINANCE_DOC_VECTORS {
        check_binance_vector(&secret, query, body, expected);
    }
}

#[test]
fn binance_docs_example_built_from_parameters() {
    // Vector 2 from its unencoded parameters: the encoder and the timing writer must produce the
    // docs' exact text, and the signature must follow.
    let secret = Secret::from_bytes(BINANCE_SECRET.as_bytes());
    let mut buf = [0u8; 512];
    let mut len = sign::put_param_encoded(&mut buf, 0, b"symbol", "１２３４５６".as_bytes()).unwrap();
    for (k, v) in [
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "1"),
        ("price", "0.1"),
    ] {
        len = sign::put_param(&mut buf, len, k.as_bytes(), v.as_bytes()).unwrap();
    }
    len = binance::put_timing(&mut buf, len, binance::RecvWindow::from_ms(5_000), 1_499_827_319_559).unwrap();
    assert_eq!(&buf[..len], BINANCE_DOC_VECTORS[1].0.as_bytes());
    len = binance::append_signature(&secret, b"", &mut buf, len).unwrap();
    assert!(buf[..len].ends_with(BINANCE_DOC_VECTORS[1].2.as_bytes()));

    // Without a window the parameter is omitted (the venue then applies 5000 ms).
    let len = binance::put_timing(&mut buf, 0, None, 1_499_827_319_559).unwrap();
    assert_eq!(&buf[..len], b"timestamp=1499827319559");
}

/// `shared/` next to the workspace, or `None` with a note when it is not there.
fn shared_dir(what: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is absent, skipping the {what} checks", dir.display());
        None
    }
}

#[test]
fn binance_fixture_vectors() {
    let Some(dir) = shared_dir("binance/hmac_signing_vectors.json") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("fixtures/venues/binance/hmac_signing_vectors.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let secret_text = doc["secretKey"].as_str().unwrap();
    assert_eq!(secret_text, BINANCE_SECRET);
    let secret = Secret::from_bytes(secret_text.as_bytes());
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let query = v["queryString"].as_str().unwrap();
        let body = v["requestBody"].as_str().unwrap();
        let expected = v["signature"].as_str().unwrap();
        check_binance_vector(&secret, query, body, expected);
        if let Some(signed) = v["signedPayload"].as_str() {
            assert_eq!(
                signed,
                format!("{query}{body}"),
                "totalParams is query ++ body, no separator"
            );
        }
        if let Some(raw) = v["unencodedQueryString"].as_str() {
            // Re-encode every value of the raw query with the gateway's encoder.
            let mut buf = [0u8; 512];
            let mut len = 0;
            for pair in raw.split('&') {
                let (k, val) = pair.split_once('=').unwrap();
                len = sign::put_param_encoded(&mut buf, len, k.as_bytes(), val.as_bytes()).unwrap();
            }
            assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), query);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bybit.

#[test]
fn reference_hmac_matches_rfc4231() {
    // Test cases 1, 2 and 6 (a key longer than the block, hashed first).
    assert_eq!(
        reference_hmac_hex(&[0x0b; 20], b"Hi There"),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        reference_hmac_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        reference_hmac_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn bybit_docs_example_strings() {
    // venues.md §3.8: the docs' GET and POST strings to sign. Their secret is not published, so
    // the layout is checked by signing the docs' exact strings with our own secret.
    let secret_text = "bybit-test-secret-not-a-real-key";
    let secret = Secret::from_bytes(secret_text.as_bytes());
    let cases: [(u64, &str, &str); 2] = [
        (
            1_658_384_314_791,
            "category=option&symbol=BTC-29JUL22-25000-C",
            "1658384314791XXXXXXXXXX5000category=option&symbol=BTC-29JUL22-25000-C",
        ),
        (
            1_658_385_579_423,
            r#"{"category": "option"}"#,
            r#"1658385579423XXXXXXXXXX5000{"category": "option"}"#,
        ),
    ];
    for (timestamp, payload, docs_string) in cases {
        let before = allocations();
        let h = bybit::sign(
            &secret,
            b"XXXXXXXXXX",
            timestamp,
            bybit::DEFAULT_RECV_WINDOW_MS,
            payload.as_bytes(),
        );
        assert_eq!(allocations(), before, "Bybit signing allocated");
        assert_eq!(
            h.sign(),
            reference_hmac_hex(secret_text.as_bytes(), docs_string.as_bytes())
        );
        assert_eq!(h.timestamp(), timestamp.to_string());
        assert_eq!(h.recv_window(), "5000");
        let pairs = h.pairs("XXXXXXXXXX");
        let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "X-BAPI-API-KEY",
                "X-BAPI-TIMESTAMP",
                "X-BAPI-SIGN",
                "X-BAPI-RECV-WINDOW"
            ]
        );
        assert_eq!(pairs[0].1, "XXXXXXXXXX");
        assert_eq!(pairs[2].1, h.sign());
    }
}

#[test]
fn bybit_ws_auth_signature() {
    // `bybit/auth_request.json` uses expires 1662350400000; the signed string is "GET/realtime" + it.
    let secret_text = "bybit-test-secret-not-a-real-key";
    let secret = Secret::from_bytes(secret_text.as_bytes());
    let sig = bybit::ws_auth_signature(&secret, 1_662_350_400_000);
    assert_eq!(
        sig_str(&sig),
        reference_hmac_hex(secret_text.as_bytes(), b"GET/realtime1662350400000")
    );
}

// ---------------------------------------------------------------------------------------------
// Secret handling and bad buffers.

#[test]
fn secret_debug_never_shows_the_key() {
    let secret = Secret::from_bytes(BINANCE_SECRET.as_bytes());
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert_eq!(format!("{secret:#?}"), "Secret(***)");
    assert!(!format!("{:?}", Some(&secret)).contains("NhqP"));
}

#[test]
fn secret_from_env() {
    // Cargo sets CARGO_PKG_NAME for the test process; reading it needs no `set_var` (unsafe in
    // edition 2024), and its value must key the HMAC exactly like `from_bytes` on the same text.
    let value = std::env::var("CARGO_PKG_NAME").unwrap();
    let from_env = Secret::from_env("CARGO_PKG_NAME").unwrap();
    assert_eq!(format!("{from_env:?}"), "Secret(***)");
    let direct = Secret::from_bytes(value.as_bytes());
    assert_eq!(
        sign::hmac_sha256_hex(&from_env, &[b"x"]),
        sign::hmac_sha256_hex(&direct, &[b"x"])
    );

    let missing = "MAXX_GATEWAY_SIGN_TEST_UNSET_VARIABLE";
    assert!(std::env::var_os(missing).is_none());
    let err = Secret::from_env(missing).unwrap_err();
    assert!(err.contains(missing), "error names the variable: {err}");
}

#[test]
fn too_small_buffer_is_an_error_not_a_panic() {
    let secret = Secret::from_bytes(BINANCE_SECRET.as_bytes());
    let text = b"symbol=LTCBTC&timestamp=1499827319559";
    let needed = text.len() + "&signature=".len() + 64;

    let mut buf = [0u8; 128];
    buf[..text.len()].copy_from_slice(text);
    let short = &mut buf[..needed - 1];
    assert_eq!(
        binance::append_signature(&secret, b"", short, text.len()),
        Err(SignError::BufferTooSmall {
            needed,
            capacity: needed - 1
        })
    );
    assert_eq!(&buf[..text.len()], text, "the request text is left intact");
    assert_eq!(buf[text.len()], 0, "nothing was appended");
    assert_eq!(
        binance::append_signature(&secret, b"", &mut buf[..needed], text.len()),
        Ok(needed)
    );

    let mut tiny = [0u8; 8];
    assert_eq!(
        binance::append_signature(&secret, b"", &mut tiny, 9),
        Err(SignError::LengthOutOfBounds { len: 9, capacity: 8 })
    );
    assert!(matches!(
        binance::put_timing(&mut tiny, 0, None, 1_499_827_319_559),
        Err(SignError::BufferTooSmall { .. })
    ));
    assert!(matches!(
        sign::put_param_encoded(&mut tiny, 0, b"symbol", "１".as_bytes()),
        Err(SignError::BufferTooSmall {
            needed: 16,
            capacity: 8
        })
    ));
    assert_eq!(tiny, [0u8; 8], "a refused write leaves the buffer untouched");
}

// ---------------------------------------------------------------------------------------------
// Properties: the allocation-free signers equal plain String-building references.

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-zA-Z]{1,12}", "\\PC{0,16}"), 0..8)
}

proptest! {
    #[test]
    fn binance_signer_equals_string_reference(
        params in params(),
        query in "[a-zA-Z0-9=&]{0,40}",
        window in prop::option::of(1u32..=60_000),
        timestamp in any::<u64>(),
        secret_text in "[ -~]{1,80}",
    ) {
        let secret = Secret::from_bytes(secret_text.as_bytes());
        let window = window.and_then(binance::RecvWindow::from_ms);

        let mut buf = [0u8; 2048];
        let mut len = 0;
        for (k, v) in &params {
            len = sign::put_param_encoded(&mut buf, len, k.as_bytes(), v.as_bytes()).unwrap();
        }
        len = binance::put_timing(&mut buf, len, window, timestamp).unwrap();
        let before = allocations();
        len = binance::append_signature(&secret, query.as_bytes(), &mut buf, len).unwrap();
        prop_assert_eq!(allocations(), before);

        let mut parts: Vec<String> =
            params.iter().map(|(k, v)| format!("{k}={}", reference_percent_encode(v.as_bytes()))).collect();
        if let Some(w) = window {
            parts.push(format!("recvWindow={}", w.ms()));
        }
        parts.push(format!("timestamp={timestamp}"));
        let text = parts.join("&");
        let sig = reference_hmac_hex(secret_text.as_bytes(), format!("{query}{text}").as_bytes());
        let expected = format!("{text}&signature={sig}");
        prop_assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), expected);
    }

    #[test]
    fn bybit_signer_equals_string_reference(
        api_key in "[A-Za-z0-9]{1,40}",
        timestamp in any::<u64>(),
        recv_window in any::<u32>(),
        payload in "\\PC{0,120}",
        secret_text in "[ -~]{1,80}",
    ) {
        let secret = Secret::from_bytes(secret_text.as_bytes());
        let h = bybit::sign(&secret, api_key.as_bytes(), timestamp, recv_window, payload.as_bytes());
        let expected = reference_hmac_hex(
            secret_text.as_bytes(),
            format!("{timestamp}{api_key}{recv_window}{payload}").as_bytes(),
        );
        prop_assert_eq!(h.sign(), expected);
        prop_assert_eq!(h.timestamp(), timestamp.to_string());
        prop_assert_eq!(h.recv_window(), recv_window.to_string());
    }
}

//! End-to-end tests of the gRPC `RiskService` of `maxx run` (`proto/risk.proto`), with the
//! generated tonic client over real HTTP/2 on loopback: `GetState` without a token, `Kill` and
//! `Resume` refused without the right bearer token, the kill switch tripped over gRPC (HALTED
//! and killed, as `GET /risk/state` agrees), lifted by `Resume`, `Resume` refused while the
//! kill file exists, and a clean stop while a client that no longer answers is still connected.

mod common;

use common::{Running, TOKEN, TempDir, config_with, is_canonical_decimal};
use maxx_cold::grpc::pb::risk_service_client::RiskServiceClient;
use maxx_cold::grpc::pb::{GetStateRequest, KillRequest, ResumeRequest, RiskStateReply};
use tokio::runtime::Runtime;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A request carrying `authorization: <value>` metadata.
fn with_auth<T>(message: T, value: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::try_from(value).expect("ASCII metadata"));
    request
}

fn bearer<T>(message: T) -> Request<T> {
    with_auth(message, &format!("Bearer {TOKEN}"))
}

/// `GetState`, with no token.
fn get_state(rt: &Runtime, client: &mut RiskServiceClient<Channel>) -> RiskStateReply {
    rt.block_on(client.get_state(GetStateRequest {}))
        .unwrap_or_else(|s| panic!("GetState: {s}"))
        .into_inner()
}

/// `(state, killed, kill_switch_tripped)` over gRPC.
fn grpc_system(rt: &Runtime, client: &mut RiskServiceClient<Channel>) -> (String, bool, bool) {
    let s = get_state(rt, client);
    (s.state, s.killed, s.kill_switch_tripped)
}

/// `(state, killed, kill_switch_tripped)` from `GET /risk/state`.
fn http_system(run: &Running) -> (String, bool, bool) {
    let (status, v) = run.get("/risk/state");
    assert_eq!(status, 200, "{v}");
    let system = &v["system"];
    (
        system["state"].as_str().unwrap_or_default().to_string(),
        system["killed"].as_bool().unwrap_or_default(),
        system["kill_switch_tripped"].as_bool().unwrap_or_default(),
    )
}

/// Polls `GetState` until the system reads `want`.
fn wait_for(
    run: &mut Running,
    rt: &Runtime,
    client: &mut RiskServiceClient<Channel>,
    what: &str,
    want: (&str, bool, bool),
) {
    run.poll(what, |_| {
        let seen = grpc_system(rt, client);
        if (seen.0.as_str(), seen.1, seen.2) == want {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    });
}

#[test]
fn kill_and_resume_over_grpc_with_the_bearer_token() {
    let dir = TempDir::new("grpc-risk");
    let path = dir.write("run.yaml", config_with(&[("  wait:", "  wait: park")]));
    let mut run = Running::start(&path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut client = rt
        .block_on(RiskServiceClient::connect(format!("http://{}", run.grpc)))
        .unwrap_or_else(|e| panic!("connect to grpc://{}: {e}", run.grpc));

    // GetState needs no token and shows every configured symbol with decimal strings.
    let first = run.poll("Risk's first publication over gRPC", |_| {
        let s = get_state(&rt, &mut client);
        if s.published > 0 { Ok(s) } else { Err(format!("{s:?}")) }
    });
    assert_eq!(
        (first.state.as_str(), first.killed, first.kill_switch_tripped),
        ("active", false, false),
        "{first:?}"
    );
    assert!(is_canonical_decimal(&first.kelly_clip), "{first:?}");
    let symbols: Vec<&str> = first.symbols.iter().map(|s| s.symbol.as_str()).collect();
    assert_eq!(symbols, ["BTCUSDT", "ETHUSDT"], "{first:?}");
    for s in &first.symbols {
        assert!(["active", "reducing", "halted"].contains(&s.state.as_str()), "{s:?}");
        assert!(is_canonical_decimal(&s.position), "{s:?}");
    }

    // Kill and Resume without the token, or with a wrong one, are refused and change nothing.
    for request in [
        Request::new(KillRequest {}),
        with_auth(KillRequest {}, "Bearer not-the-token"),
        with_auth(KillRequest {}, TOKEN),
    ] {
        let err = rt.block_on(client.kill(request)).expect_err("Kill without the token");
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    }
    let err = rt
        .block_on(client.resume(Request::new(ResumeRequest {})))
        .expect_err("Resume without the token");
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert_eq!(grpc_system(&rt, &mut client), ("active".into(), false, false));

    // With the token, Kill trips the switch: HALTED and killed, over gRPC and over HTTP alike.
    let reply = rt
        .block_on(client.kill(bearer(KillRequest {})))
        .expect("Kill")
        .into_inner();
    assert!(!reply.already_tripped, "{reply:?}");
    wait_for(&mut run, &rt, &mut client, "HALTED by Kill", ("halted", true, true));
    assert_eq!(http_system(&run), ("halted".into(), true, true));
    let again = rt
        .block_on(client.kill(bearer(KillRequest {})))
        .expect("Kill")
        .into_inner();
    assert!(again.already_tripped, "{again:?}");

    // Resume lifts it.
    let reply = rt
        .block_on(client.resume(bearer(ResumeRequest {})))
        .expect("Resume")
        .into_inner();
    assert!(reply.accepted, "{reply:?}");
    wait_for(
        &mut run,
        &rt,
        &mut client,
        "ACTIVE after Resume",
        ("active", false, false),
    );
    assert_eq!(http_system(&run), ("active".into(), false, false));

    // While the kill file exists it holds the switch down: Resume is refused until it is gone.
    let kill_file = dir.path().join("maxx-state/KILL");
    std::fs::create_dir_all(kill_file.parent().expect("parent")).expect("state dir");
    std::fs::write(&kill_file, b"").expect("kill file");
    wait_for(
        &mut run,
        &rt,
        &mut client,
        "HALTED by the kill file",
        ("halted", true, true),
    );
    let err = rt
        .block_on(client.resume(bearer(ResumeRequest {})))
        .expect_err("Resume while the kill file exists");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("remove it first"), "{err}");
    std::fs::remove_file(&kill_file).expect("remove kill file");
    rt.block_on(client.resume(bearer(ResumeRequest {}))).expect("Resume");
    wait_for(
        &mut run,
        &rt,
        &mut client,
        "ACTIVE after the file is gone",
        ("active", false, false),
    );

    // The client stays connected but is no longer driven (its runtime is idle), like a wedged
    // client: it must not hold the engine's shutdown.
    let stderr = run.stop();
    assert!(stderr.contains("kill switch tripped over gRPC"), "{stderr}");
    assert!(stderr.contains("gRPC clients still connected at shutdown"), "{stderr}");
}

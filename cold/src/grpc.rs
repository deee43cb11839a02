//! The gRPC server (tonic), bound to `grpc.listen`: the `RiskService` of `proto/risk.proto`, the
//! `ExecutionService` of `proto/execution.proto`, and server reflection (`grpc.reflection.v1`
//! and `v1alpha`, from the descriptor set `build.rs` writes), so `grpcurl -plaintext ADDR list`
//! works without the `.proto` files.
//!
//! [`ExecutionGrpc`] is a thin shell over the order desk ([`crate::desk::Desk`]): it checks the
//! bearer token and hands the request over; validation, idempotency, correlation with the
//! engine's records and the status codes are the desk's (the HTTP API's `POST /order` and
//! `POST /cancel` call the same desk). Requests above [`MAX_ORDER_REQUEST`] bytes are refused
//! by tonic before decoding.
//!
//! The RiskService is the gRPC path to the kill switch the RiskSentinel issue requires, next to HTTP, the
//! CLI and the kill file; the same three controls as `POST /risk/kill`, `POST /risk/resume`
//! and `GET /risk/state`, with the same rules:
//!
//! - `Kill` trips the engine's [`KillSwitch`] directly, with no queue and no cold loop in the
//!   way, and says whether it was already tripped.
//! - `Resume` refuses with `FAILED_PRECONDITION` while `risk.kill_file` exists (the file would
//!   trip the switch again), else queues [`RiskCommand::Resume`] for Risk (`UNAVAILABLE` when the
//!   queue is full: nothing was applied).
//! - `GetState` answers from the [`RiskBoard`] Risk publishes, so a client never reaches a hot
//!   thread.
//!
//! `Kill`, `Resume`, `SubmitOrder` and `CancelOrder` need `authorization: Bearer <token>`
//! metadata, the HTTP API's token ([`load_token`](crate::http::load_token)), compared in constant
//! time: missing or wrong is `UNAUTHENTICATED` (a wrong token is not told apart from a missing
//! one); with no token configured they are disabled (`UNAVAILABLE`, saying how to configure
//! one). `GetState` is open, like `GET /risk/state`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use maxx_hot::board::RiskBoard;
use maxx_hot::ids::InstrumentIndex;
use maxx_hot::kill::KillSwitch;
use maxx_hot::stage::risk::RiskCommand;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::desk::Desk;
use crate::http::TOKEN_ENV;

/// The code generated from `proto/risk.proto` and `proto/execution.proto` (package `maxx.v1`)
/// by `build.rs`: messages, the server traits and the clients.
pub mod pb {
    tonic::include_proto!("maxx.v1");

    /// The encoded `FileDescriptorSet` of both `.proto` files, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/maxx_descriptor.bin"));
}

use pb::execution_service_server::{ExecutionService, ExecutionServiceServer};
use pb::risk_service_server::{RiskService, RiskServiceServer};
use pb::{
    CancelAck, CancelRequest, GetStateRequest, KillReply, KillRequest, OrderAck, OrderRequest, ResumeReply,
    ResumeRequest, RiskStateReply, SymbolRiskState,
};

/// Largest `SubmitOrder` / `CancelOrder` request accepted, in bytes: far above any valid order
/// (every string field is short), far below tonic's 4 MiB default.
pub const MAX_ORDER_REQUEST: usize = 16 * 1024;

/// Checks `authorization: Bearer <token>` metadata against `token`, in constant time over its
/// bytes. `disabled` names the calls refused when no token is configured.
fn check_bearer(token: Option<&str>, metadata: &MetadataMap, disabled: &str) -> Result<(), Status> {
    let Some(token) = token else {
        return Err(Status::unavailable(format!(
            "{disabled} are disabled: no API token is configured (set {TOKEN_ENV} or http.token_file)"
        )));
    };
    let given = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>` metadata"))?;
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differ {
        return Err(Status::unauthenticated("invalid bearer token"));
    }
    Ok(())
}

/// The `RiskService` implementation: shared handles on the engine, nothing of its own.
pub struct RiskGrpc {
    /// Symbols ↔ instrument ids, for naming the board's instruments.
    pub index: Arc<InstrumentIndex>,
    /// Cold → Risk commands (resume).
    pub risk_cmd: Arc<ArrayQueue<RiskCommand>>,
    /// The engine's kill switch (tripped directly).
    pub kill: KillSwitch,
    /// `risk.kill_file`: while it exists the switch trips again, so resuming refuses.
    pub kill_file: Option<PathBuf>,
    /// Risk's published state.
    pub board: Arc<RiskBoard>,
    /// The bearer token of `Kill` and `Resume`; `None` disables them.
    pub token: Option<String>,
}

impl std::fmt::Debug for RiskGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs and panic messages.
        f.debug_struct("RiskGrpc")
            .field("kill", &self.kill)
            .field("kill_file", &self.kill_file)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl RiskGrpc {
    /// Checks the bearer token of a mutating call, in constant time over its bytes.
    fn authorize(&self, metadata: &MetadataMap) -> Result<(), Status> {
        check_bearer(self.token.as_deref(), metadata, "Kill and Resume")
    }
}

/// The `ExecutionService` implementation: the bearer token in front of the order desk.
pub struct ExecutionGrpc {
    /// The order desk (shared with the HTTP API and the drain loop).
    pub desk: Arc<Desk>,
    /// The bearer token of both calls; `None` disables them.
    pub token: Option<String>,
}

impl std::fmt::Debug for ExecutionGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs and panic messages.
        f.debug_struct("ExecutionGrpc")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl ExecutionService for ExecutionGrpc {
    async fn submit_order(&self, request: Request<OrderRequest>) -> Result<Response<OrderAck>, Status> {
        check_bearer(self.token.as_deref(), request.metadata(), "SubmitOrder and CancelOrder")?;
        self.desk.submit(request.get_ref()).await.map(Response::new)
    }

    async fn cancel_order(&self, request: Request<CancelRequest>) -> Result<Response<CancelAck>, Status> {
        check_bearer(self.token.as_deref(), request.metadata(), "SubmitOrder and CancelOrder")?;
        self.desk.cancel(request.get_ref()).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl RiskService for RiskGrpc {
    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<KillReply>, Status> {
        self.authorize(request.metadata())?;
        // Read before tripping: a concurrent trip between the two is reported as not already
        // tripped, which is harmless (the switch is tripped either way).
        let already_tripped = self.kill.is_tripped();
        self.kill.trip();
        tracing::warn!(already_tripped, "kill switch tripped over gRPC");
        Ok(Response::new(KillReply { already_tripped }))
    }

    async fn resume(&self, request: Request<ResumeRequest>) -> Result<Response<ResumeReply>, Status> {
        self.authorize(request.metadata())?;
        if let Some(file) = self.kill_file.as_ref().filter(|f| f.exists()) {
            return Err(Status::failed_precondition(format!(
                "the kill file {} exists and would trip the switch again: remove it first",
                file.display()
            )));
        }
        // Risk lifts the switch itself, and only if no newer trip has happened, so a kill racing
        // this resume wins.
        self.risk_cmd
            .push(RiskCommand::Resume)
            .map_err(|_| Status::unavailable("the Risk command queue is full; nothing was applied, retry shortly"))?;
        tracing::warn!("kill switch and system halt lifted over gRPC");
        Ok(Response::new(ResumeReply { accepted: true }))
    }

    async fn get_state(&self, _request: Request<GetStateRequest>) -> Result<Response<RiskStateReply>, Status> {
        Ok(Response::new(state_reply(
            &self.index,
            &self.board,
            self.kill.is_tripped(),
        )))
    }
}

/// The `GetState` answer from one consistent read of the board.
fn state_reply(index: &InstrumentIndex, board: &RiskBoard, kill_switch_tripped: bool) -> RiskStateReply {
    let view = board.read();
    let symbols = index
        .iter()
        .map(|i| {
            let v = view.instruments.get(i.id.index()).copied().unwrap_or_default();
            SymbolRiskState {
                symbol: i.symbol.to_string(),
                state: v.state.name().to_string(),
                position: v.position.to_string(),
            }
        })
        .collect();
    RiskStateReply {
        published: view.version,
        state: view.system.state.name().to_string(),
        killed: view.system.killed,
        kill_switch_tripped,
        kelly_clip: view.system.kelly_clip.to_string(),
        symbols,
    }
}

/// How long the server waits, once told to stop, for its connections to close.
///
/// HTTP/2's graceful close needs the client's cooperation (it must answer the server's GOAWAY
/// and hang up); a client that is connected but no longer reads would otherwise hold
/// `maxx run`'s shutdown forever (`tests/cli_grpc.rs` keeps such a client). Calls here are
/// short, so in-flight ones finish well within this.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Binds `addr` and serves the RiskService, the ExecutionService and reflection until
/// `shutdown` resolves; returns the bound address (port 0 picks a free one) and the server
/// task. The task ends once in-flight calls have finished and clients have closed, or after
/// [`SHUTDOWN_GRACE`], whichever comes first.
pub async fn serve(
    addr: SocketAddr,
    risk: RiskGrpc,
    execution: ExecutionGrpc,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let reflection =
        || tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET);
    let reflection_v1 = reflection().build_v1().map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .layer(crate::telemetry::grpc_layer())
            .add_service(RiskServiceServer::new(risk))
            .add_service(ExecutionServiceServer::new(execution).max_decoding_message_size(MAX_ORDER_REQUEST))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        tokio::pin!(server);
        tokio::select! {
            ended = &mut server => return ended.map_err(std::io::Error::other),
            () = shutdown => {}
        }
        let _ = stop.send(());
        match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
            Ok(ended) => ended.map_err(std::io::Error::other),
            Err(_) => {
                tracing::warn!(
                    grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                    "gRPC clients still connected at shutdown; not waiting for them"
                );
                Ok(())
            }
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxx_hot::board::{InstrumentRiskView, SystemRiskView};
    use maxx_hot::num::{Qty, SignedQty};
    use maxx_hot::records::{Factor, TradingState};
    use tonic::metadata::MetadataValue;

    fn index() -> Arc<InstrumentIndex> {
        use maxx_hot::ids::{Symbol, Venue, VenueSymbol};
        let entry = |name: &str| {
            let mut venues = [None; Venue::COUNT];
            venues[Venue::Binance.index()] = Some(VenueSymbol::new(name).unwrap());
            (Symbol::new(name).unwrap(), venues)
        };
        Arc::new(InstrumentIndex::new([entry("BTCUSDT"), entry("ETHUSDT")]).unwrap())
    }

    fn service(token: Option<&str>, kill_file: Option<PathBuf>) -> RiskGrpc {
        let index = index();
        RiskGrpc {
            board: Arc::new(RiskBoard::new(index.len())),
            index,
            risk_cmd: Arc::new(ArrayQueue::new(1)),
            kill: KillSwitch::new(),
            kill_file,
            token: token.map(str::to_string),
        }
    }

    fn with_token<T>(message: T, value: &str) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", MetadataValue::try_from(value).unwrap());
        r
    }

    #[tokio::test]
    async fn kill_and_resume_check_the_token_before_acting() {
        let svc = service(Some("s3cret"), None);
        let err = svc.kill(Request::new(KillRequest {})).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        let err = svc.kill(with_token(KillRequest {}, "Bearer wrong!")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        let err = svc.kill(with_token(KillRequest {}, "s3cret")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "no Bearer scheme: {err}");
        let err = svc.resume(Request::new(ResumeRequest {})).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        assert!(!svc.kill.is_tripped());
        assert!(svc.risk_cmd.is_empty());

        let reply = svc.kill(with_token(KillRequest {}, "Bearer s3cret")).await.unwrap();
        assert!(!reply.get_ref().already_tripped);
        assert!(svc.kill.is_tripped());
        let reply = svc.kill(with_token(KillRequest {}, "Bearer s3cret")).await.unwrap();
        assert!(reply.get_ref().already_tripped);
        assert_eq!(svc.kill.generation(), 1, "a second kill is not a second trip");

        let reply = svc.resume(with_token(ResumeRequest {}, "Bearer s3cret")).await.unwrap();
        assert!(reply.get_ref().accepted);
        assert!(matches!(svc.risk_cmd.pop(), Some(RiskCommand::Resume)));
    }

    #[tokio::test]
    async fn without_a_configured_token_kill_and_resume_are_unavailable() {
        let svc = service(None, None);
        let err = svc
            .kill(with_token(KillRequest {}, "Bearer anything"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains(TOKEN_ENV), "{err}");
        let err = svc.resume(Request::new(ResumeRequest {})).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(!svc.kill.is_tripped());
        // Reading the state needs no token.
        assert!(svc.get_state(Request::new(GetStateRequest {})).await.is_ok());
    }

    #[tokio::test]
    async fn resume_refuses_while_the_kill_file_exists_and_when_the_queue_is_full() {
        let file = std::env::temp_dir().join(format!("maxx-grpc-kill-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let svc = service(Some("t"), Some(file.clone()));
        let err = svc.resume(with_token(ResumeRequest {}, "Bearer t")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("remove it first"), "{err}");
        assert!(svc.risk_cmd.is_empty());
        std::fs::remove_file(&file).unwrap();

        assert!(svc.resume(with_token(ResumeRequest {}, "Bearer t")).await.is_ok());
        // The queue holds one command: the next resume finds it full.
        let err = svc.resume(with_token(ResumeRequest {}, "Bearer t")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert!(err.message().contains("queue is full"), "{err}");
    }

    fn execution(token: Option<&str>) -> (ExecutionGrpc, Arc<ArrayQueue<maxx_hot::records::OrderIntent>>) {
        let manual = Arc::new(ArrayQueue::new(4));
        let rules = vec![
            crate::desk::Rules {
                tick_size: "0.01".parse().unwrap(),
                lot_size: "0.00001".parse().unwrap(),
            };
            2
        ];
        let desk = Desk::new(index(), rules, Arc::clone(&manual), Arc::new(ArrayQueue::new(4)))
            .with_waits(Duration::from_millis(10), Duration::from_millis(10));
        let svc = ExecutionGrpc {
            desk: Arc::new(desk),
            token: token.map(str::to_string),
        };
        (svc, manual)
    }

    fn order() -> OrderRequest {
        OrderRequest {
            client_order_id: "g-1".into(),
            symbol: "BTCUSDT".into(),
            side: pb::Side::Buy as i32,
            qty: "0.001".into(),
            price: "61000".into(),
            r#type: pb::OrderType::Limit as i32,
            time_in_force: pb::TimeInForce::Gtc as i32,
            venue: String::new(),
        }
    }

    #[tokio::test]
    async fn order_entry_checks_the_token_before_the_desk_sees_anything() {
        let (svc, manual) = execution(Some("s3cret"));
        let cancel = || CancelRequest {
            target: Some(pb::cancel_request::Target::ClientOrderId("g-1".into())),
        };
        for request in [
            Request::new(order()),
            with_token(order(), "Bearer wrong!"),
            with_token(order(), "s3cret"),
        ] {
            let err = svc.submit_order(request).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        }
        let err = svc.cancel_order(Request::new(cancel())).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        assert!(manual.is_empty());

        // With the token the desk answers: no market data here, so nothing decides in time.
        let ack = svc
            .submit_order(with_token(order(), "Bearer s3cret"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.status, pb::OrderStatus::Unknown as i32, "{ack:?}");
        assert_eq!(manual.len(), 1);
        let bad = OrderRequest {
            qty: "0".into(),
            ..order()
        };
        let err = svc.submit_order(with_token(bad, "Bearer s3cret")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

        let (svc, manual) = execution(None);
        let err = svc
            .submit_order(with_token(order(), "Bearer anything"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.message().contains(TOKEN_ENV), "{err}");
        assert!(manual.is_empty());
    }

    #[test]
    fn reflection_serves_both_protos() {
        let reflection = || {
            tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        };
        assert!(reflection().build_v1().is_ok());
        assert!(reflection().build_v1alpha().is_ok());
        // The set names both files (their names are plain strings inside the encoding).
        for name in ["risk.proto", "execution.proto", "maxx.v1"] {
            assert!(
                pb::FILE_DESCRIPTOR_SET
                    .windows(name.len())
                    .any(|w| w == name.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn state_reply_names_every_symbol_with_decimal_strings() {
        let svc = service(None, None);
        let before = state_reply(&svc.index, &svc.board, false);
        assert_eq!(before.published, 0);
        assert_eq!(before.symbols.len(), 2);

        let system = SystemRiskView {
            state: TradingState::Halted,
            killed: true,
            kelly_clip: Factor::from_num(0.25),
            ..SystemRiskView::default()
        };
        let btc = InstrumentRiskView {
            state: TradingState::Reducing,
            position: "-0.015".parse::<SignedQty>().unwrap(),
            open_buy: Qty::ZERO,
            open_sell: Qty::ZERO,
        };
        svc.board
            .publish(&system, [btc, InstrumentRiskView::default()].into_iter());
        let r = state_reply(&svc.index, &svc.board, true);
        assert_eq!(r.published, 1);
        assert_eq!(
            (r.state.as_str(), r.killed, r.kill_switch_tripped),
            ("halted", true, true)
        );
        assert_eq!(r.kelly_clip, "0.25");
        let names: Vec<(&str, &str, &str)> = r
            .symbols
            .iter()
            .map(|s| (s.symbol.as_str(), s.state.as_str(), s.position.as_str()))
            .collect();
        assert_eq!(names, [("BTCUSDT", "reducing", "-0.015"), ("ETHUSDT", "active", "0")]);
    }
}

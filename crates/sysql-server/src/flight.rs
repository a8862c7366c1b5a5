//! The agent's Flight SQL service: `GetFlightInfo(CommandStatementQuery)`
//! prepares a statement in the client's session (its kind in the answer),
//! `DoGet(TicketStatementQuery)` prepares it again and streams its batches
//! as they come (a live statement's rows as they happen). A client that
//! goes away (Ctrl-C) drops the stream, which stops the statement and frees
//! its live subscriptions.

use crate::{error_kind_name, kind_name, AgentInfo, ERROR_KIND_HEADER, INFO_ACTION, SESSION_HEADER, VERSION};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery};
use arrow_flight::{Action, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::{Stream, TryStreamExt};
use prost::Message;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sysql_engine::query::{Kind, Policy, QueryError, QuerySession};
use sysql_engine::Engine;
use tonic::{Request, Response, Status};

/// Sessions idle longer than this are forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// At most this many sessions; past it the one idle longest goes.
const MAX_SESSIONS: usize = 1024;

/// The sessions of the agent's clients, by the id each client chose.
pub struct Sessions {
    engine: Engine,
    policy: Policy,
    map: Mutex<HashMap<String, (Arc<QuerySession>, Instant)>>,
}

impl Sessions {
    pub fn new(engine: Engine, policy: Policy) -> Self {
        Sessions { engine, policy, map: Mutex::new(HashMap::new()) }
    }

    /// The session named `id`, made if new.
    pub fn get(&self, id: &str) -> Result<Arc<QuerySession>, QueryError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, used)| now.duration_since(*used) < SESSION_IDLE);
        if let Some((session, used)) = map.get_mut(id) {
            *used = now;
            return Ok(session.clone());
        }
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        let session = Arc::new(QuerySession::new(&self.engine, self.policy.clone())?);
        map.insert(id.to_string(), (session.clone(), now));
        Ok(session)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The Flight SQL service over an engine.
#[derive(Clone)]
pub struct FlightSql {
    sessions: Arc<Sessions>,
}

impl FlightSql {
    pub fn new(sessions: Arc<Sessions>) -> Self {
        FlightSql { sessions }
    }

    fn session<T>(&self, request: &Request<T>) -> Result<Arc<QuerySession>, Status> {
        let id = request.metadata().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("default");
        self.sessions.get(id).map_err(status)
    }

    /// What `sysql.info` says.
    pub fn info(&self) -> AgentInfo {
        let engine = self.sessions.engine();
        let mut since: Option<i64> = None;
        for t in sysql_events::Table::ALL {
            let memory = engine.history().usage(t).oldest;
            let disk = engine.store().and_then(|s| s.span(t)).map(|(min, _)| min);
            for v in [memory, disk].into_iter().flatten() {
                since = Some(since.map_or(v, |s| s.min(v)));
            }
        }
        AgentInfo { version: VERSION.to_string(), history_since: since, pid: std::process::id() }
    }
}

/// A query error as a gRPC status: its line, and its kind in a header.
pub fn status(e: QueryError) -> Status {
    use sysql_engine::query::ErrorKind;
    let code = match e.kind {
        ErrorKind::Syntax | ErrorKind::Plan => tonic::Code::InvalidArgument,
        ErrorKind::ReadOnly | ErrorKind::Privilege => tonic::Code::PermissionDenied,
        ErrorKind::Resources => tonic::Code::ResourceExhausted,
        ErrorKind::Cancelled => tonic::Code::Cancelled,
        ErrorKind::Execution => tonic::Code::Internal,
    };
    let mut status = Status::new(code, e.message.clone());
    if let Ok(v) = error_kind_name(e.kind).parse() {
        status.metadata_mut().insert(ERROR_KIND_HEADER, v);
    }
    status
}

type DataStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request)?;
        let prepared = session.prepare_sql(&query.query).await.map_err(status)?;
        let ticket = TicketStatementQuery { statement_handle: query.query.into_bytes().into() };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(prepared.schema())
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner())
            .with_app_metadata(statement_metadata(&prepared));
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let session = self.session(&request)?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the statement is not UTF-8"))?;
        let stream = session.run(&sql).await.map_err(status)?;
        let schema = stream.schema().clone();
        let live = matches!(stream.kind(), Kind::Live | Kind::Window);
        let batches = stream.map_err(|e| FlightError::Tonic(Box::new(status(e))));
        let mut encoder = FlightDataEncoderBuilder::new().with_schema(schema);
        if live {
            // small messages: a live row goes out as soon as it comes
            encoder = encoder.with_max_flight_data_size(64 << 10);
        }
        let data: DataStream = Box::pin(encoder.build(batches).map_err(Status::from));
        Ok(Response::new(data))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != INFO_ACTION {
            return Err(Status::invalid_argument(format!("unknown action {}", request.get_ref().r#type)));
        }
        let body = self.info().encode();
        let result = arrow_flight::Result { body: body.into_bytes().into() };
        Ok(Response::new(Box::pin(futures::stream::once(async move { Ok(result) }))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// Serves Flight SQL on `listener` until `shutdown` resolves, to peers whose
/// uid `allowed` accepts.
pub async fn serve(
    listener: tokio::net::UnixListener,
    sessions: Arc<Sessions>,
    allowed: impl Fn(u32) -> bool + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    use arrow_flight::flight_service_server::FlightServiceServer;
    let service = FlightServiceServer::new(FlightSql::new(sessions));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(crate::uds::incoming(listener, allowed), shutdown)
        .await
}

/// A prepared statement's answer, besides its schema: its kind, then its
/// notices, a line each.
fn statement_metadata(prepared: &sysql_engine::query::Prepared) -> Vec<u8> {
    let mut text = kind_name(prepared.kind()).to_string();
    for notice in prepared.notices() {
        text.push('\n');
        text.push_str(&notice.replace('\n', " "));
    }
    text.into_bytes()
}

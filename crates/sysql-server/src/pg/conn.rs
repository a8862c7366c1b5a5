//! One Postgres connection: the message loop, simple queries, the extended
//! protocol's Execute, transactions and cursors.

use super::auth::{OverLimit, Startup};
use super::statement::{self, Command};
use super::{error, query_error, types, Peer, PgOptions};
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, StreamExt};
use pgwire_server::api::portal::{Format, Portal};
use pgwire_server::api::query::ExtendedQueryHandler;
use pgwire_server::api::results::{DescribePortalResponse, DescribeStatementResponse, FieldInfo, Response, Tag};
use pgwire_server::api::stmt::{QueryParser, StoredStatement};
use pgwire_server::api::store::{Entry, PortalStore};
use pgwire_server::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, NoopHandler, PgWireConnectionState, Type, DEFAULT_NAME,
};
use pgwire_server::error::{PgWireError, PgWireResult};
use pgwire_server::messages::cancel::CancelRequest;
use pgwire_server::messages::data::RowDescription;
use pgwire_server::messages::extendedquery::{Execute, PortalSuspended};
use pgwire_server::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire_server::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire_server::tokio::server::{process_error, process_message, MaybeTls, PgWireMessageServerCodec};
use std::collections::HashMap;
use std::fmt::Debug;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sysql_engine::query::{Kind, Policy, QuerySession, QueryStream};
use sysql_engine::Engine;
use tokio::io::Interest;
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// A client must be through start-up and authentication within this.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Socket = Framed<MaybeTls, PgWireMessageServerCodec<PgStatement>>;

/// A unix socket client's framed connection.
pub(super) fn unix_socket(stream: tokio::net::UnixStream) -> Socket {
    use pgwire_server::api::DefaultClient;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut socket =
        Framed::new(MaybeTls::Unix(stream), PgWireMessageServerCodec::new(DefaultClient::new(addr, false)));
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    socket
}

/// What every connection shares.
pub(super) struct Shared {
    engine: Engine,
    policy: Policy,
    statement_timeout: Option<Duration>,
    max_connections: usize,
    connections: Arc<tokio::sync::Semaphore>,
    startup: Arc<Startup>,
    cancels: Arc<Cancels>,
    extended: Arc<Extended>,
    noop: Arc<NoopHandler>,
}

impl Shared {
    pub fn new(engine: Engine, policy: Policy, options: &PgOptions, manager: Arc<ConnectionManager>) -> Shared {
        let parser = Arc::new(Parser { pg: PostgresCompatibilityParser::new(), policy: policy.clone() });
        Shared {
            engine,
            policy,
            statement_timeout: options.statement_timeout,
            max_connections: options.max_connections,
            connections: Arc::new(tokio::sync::Semaphore::new(options.max_connections)),
            startup: Arc::new(Startup::new(options.passwords.clone(), manager.clone())),
            cancels: Arc::new(Cancels::default()),
            extended: Arc::new(Extended { parser }),
            noop: Arc::new(NoopHandler),
        }
    }
}

/// A statement parsed by the extended protocol's Parse.
#[derive(Debug, Clone)]
pub struct PgStatement {
    command: Command,
    /// Parameter types, as the client is told.
    params: Vec<Type>,
    /// The types the statement gives its parameters, where it does.
    param_types: Vec<Option<DataType>>,
    /// The result's columns (empty: no rows).
    schema: SchemaRef,
}

/// Cursors of a connection, kept where Parse can see their columns.
#[derive(Default)]
struct Cursors(Mutex<HashMap<String, Cursor>>);

struct Cursor {
    schema: SchemaRef,
    /// Taken out while a FETCH reads it.
    rows: Option<Rows>,
}

impl Cursors {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn session_of(client: &impl ClientInfo) -> PgWireResult<Arc<QuerySession>> {
    client.session_extensions().get::<QuerySession>().ok_or(PgWireError::NotReadyForQuery)
}

fn cursors_of(client: &impl ClientInfo) -> Arc<Cursors> {
    client.session_extensions().get_or_insert_with(Cursors::default)
}

fn show_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

/// Parse: plans the statement, for its parameters' and columns' types.
pub(super) struct Parser {
    pg: PostgresCompatibilityParser,
    policy: Policy,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = PgStatement;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut commands = statement::parse(&self.pg, &self.policy, sql).map_err(query_error)?;
        let command = match commands.len() {
            0 => return Ok(None),
            1 => commands.remove(0),
            _ => return Err(error("42601", "cannot insert multiple commands into a prepared statement".into())),
        };
        let empty = Arc::new(Schema::empty());
        let (schema, param_types) = match &command {
            Command::Query(s) => {
                let session = session_of(client)?;
                let prepared = session.prepare((**s).clone()).await.map_err(query_error)?;
                let params = prepared.parameter_types().map_err(query_error)?;
                let schema = if prepared.kind() == Kind::Command { empty } else { prepared.schema().clone() };
                (schema, params)
            }
            Command::Fetch { name, .. } => match cursors_of(client).lock().get(name) {
                Some(c) => (c.schema.clone(), vec![]),
                None => return Err(error("34000", format!("cursor \"{name}\" does not exist"))),
            },
            Command::Show { name, .. } => (show_schema(name), vec![]),
            _ => (empty, vec![]),
        };
        let n = param_types.len().max(types.len());
        let params = (0..n)
            .map(|i| match types.get(i).cloned().flatten() {
                Some(t) if t != Type::UNKNOWN => t,
                _ => param_types.get(i).cloned().flatten().map_or(Type::UNKNOWN, |dt| types::pg_type(&dt)),
            })
            .collect();
        Ok(Some(PgStatement { command, params, param_types, schema }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(&self, stmt: &PgStatement, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(types::fields(&stmt.schema, format))
    }
}

/// pgwire's extended-protocol handler: Parse, Bind, Describe and Close run
/// there; Execute runs in the connection loop.
pub(super) struct Extended {
    parser: Arc<Parser>,
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = PgStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::ApiError("Execute runs in the connection loop".into()))
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<PgStatement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let s = &target.statement;
        Ok(DescribeStatementResponse::new(s.params.clone(), types::fields(&s.schema, None)))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let s = &target.statement.statement;
        Ok(DescribePortalResponse::new(types::fields(&s.schema, Some(&target.result_column_format))))
    }
}

/// Watches a connection's socket for the peer going away, on a duplicate
/// of its descriptor (the loop owns the socket while rows are awaited).
enum PeerWatch {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    None,
}

impl PeerWatch {
    fn new(io: &MaybeTls) -> PeerWatch {
        let tcp = |s: &tokio::net::TcpStream| -> std::io::Result<PeerWatch> {
            let dup = std::net::TcpStream::from(s.as_fd().try_clone_to_owned()?);
            Ok(PeerWatch::Tcp(tokio::net::TcpStream::from_std(dup)?))
        };
        let watch = match io {
            MaybeTls::Plain(s) => tcp(s),
            MaybeTls::Tls(s) => tcp(s.get_ref().0),
            MaybeTls::Unix(s) => s
                .as_fd()
                .try_clone_to_owned()
                .and_then(|fd| tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)))
                .map(PeerWatch::Unix),
            _ => Ok(PeerWatch::None),
        };
        watch.unwrap_or(PeerWatch::None)
    }

    /// Resolves when the peer has closed (or reset) the connection.
    async fn closed(&self) {
        let clear = || Err::<(), _>(std::io::Error::from(std::io::ErrorKind::WouldBlock));
        loop {
            let ready = match self {
                PeerWatch::Tcp(s) => s.ready(Interest::READABLE).await,
                PeerWatch::Unix(s) => s.ready(Interest::READABLE).await,
                PeerWatch::None => return std::future::pending().await,
            };
            match ready {
                Ok(r) if !(r.is_read_closed() || r.is_error()) => {
                    // data from the client (a pipelined message): not a
                    // close; wait for the next change
                    let _ = match self {
                        PeerWatch::Tcp(s) => s.try_io(Interest::READABLE, clear),
                        PeerWatch::Unix(s) => s.try_io(Interest::READABLE, clear),
                        PeerWatch::None => Ok(()),
                    };
                }
                _ => return,
            }
        }
    }
}

/// A connection's cancel state: the trigger of the statement it runs, or
/// that a cancel request came while none ran.
#[derive(Default)]
pub(super) struct CancelState {
    running: Mutex<Option<futures::channel::oneshot::Sender<()>>>,
    missed: AtomicBool,
}

impl CancelState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<futures::channel::oneshot::Sender<()>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cancel(&self) {
        match self.lock().take() {
            Some(tx) if !tx.is_canceled() => {
                let _ = tx.send(());
            }
            // Between two statements: psql with FETCH_COUNT sends its next
            // FETCH right after printing the last rows, so Ctrl-C often
            // lands there; the FETCH that follows is cancelled.
            _ => self.missed.store(true, Ordering::SeqCst),
        }
    }
}

/// The cancel states of the connections, by process id and secret key, as
/// cancel requests name them.
#[derive(Default)]
pub(super) struct Cancels(Mutex<HashMap<(i32, bytes::Bytes), Arc<CancelState>>>);

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, bytes::Bytes), Arc<CancelState>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl pgwire_server::api::cancel::CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let state = self.lock().get(&(request.pid, request.secret_key.to_bytes())).cloned();
        if let Some(state) = state {
            state.cancel();
        }
    }
}

/// A cancel request for the running statement, once.
struct Cancel(Option<(Arc<CancelState>, futures::channel::oneshot::Receiver<()>)>);

impl Cancel {
    /// Arms the connection's cancel for a statement. One that `continues`
    /// a cursor or a suspended portal is cancelled at once if a cancel
    /// request came since the previous statement; any other forgets it.
    fn start(socket: &Socket, continues: bool) -> Cancel {
        let Some(state) = socket.session_extensions().get::<CancelState>() else { return Cancel(None) };
        let (tx, rx) = futures::channel::oneshot::channel();
        let mut running = state.lock();
        if state.missed.swap(false, Ordering::SeqCst) && continues {
            let _ = tx.send(());
        } else {
            *running = Some(tx);
        }
        drop(running);
        Cancel(Some((state, rx)))
    }

    async fn requested(&mut self) {
        if let Some((_, rx)) = self.0.as_mut() {
            if rx.await.is_ok() {
                self.0 = None;
                return;
            }
            self.0 = None;
        }
        std::future::pending().await
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        // the statement is over: a cancel request from now on finds none
        if let Some((state, _)) = &self.0 {
            state.lock().take();
        }
    }
}

/// Why a stream of rows stopped early.
enum Stop {
    Cancelled,
    Timeout,
    Gone,
}

/// The rows of a running statement, sent as they come.
struct Rows {
    stream: QueryStream,
    /// A batch partly sent, and where the rest starts.
    pending: Option<(RecordBatch, usize)>,
    done: bool,
    deadline: Option<Instant>,
}

impl Rows {
    fn new(stream: QueryStream, timeout: Option<Duration>) -> Rows {
        let deadline = match (stream.kind(), timeout) {
            (Kind::Bounded, Some(t)) => Some(Instant::now() + t),
            _ => None,
        };
        Rows { stream, pending: None, done: false, deadline }
    }

    fn schema(&self) -> SchemaRef {
        self.stream.schema().clone()
    }

    /// Sends up to `max` rows (all with `None`) as `fields`, flushing before
    /// each wait; returns how many, and whether more may follow.
    async fn send(
        &mut self,
        socket: &mut Socket,
        fields: &Arc<Vec<FieldInfo>>,
        max: Option<usize>,
        cancel: &mut Cancel,
        watch: &PeerWatch,
    ) -> PgWireResult<(usize, bool)> {
        let mut sent = 0usize;
        let mut rows = std::collections::VecDeque::new();
        loop {
            if let Some((batch, offset)) = self.pending.take() {
                let room = max.map_or(usize::MAX, |m| m - sent);
                let take = room.min(batch.num_rows() - offset);
                types::encode(&batch.slice(offset, take), fields, &mut rows)?;
                for row in rows.drain(..) {
                    socket.feed(PgWireBackendMessage::DataRow(row)).await?;
                }
                sent += take;
                if offset + take < batch.num_rows() {
                    self.pending = Some((batch, offset + take));
                }
            }
            if max == Some(sent) {
                return Ok((sent, self.pending.is_some() || !self.done));
            }
            if self.done {
                return Ok((sent, false));
            }
            // what is fed goes out before the wait
            socket.flush().await?;
            let deadline = self.deadline;
            let stop = async {
                tokio::select! {
                    () = cancel.requested() => Stop::Cancelled,
                    () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => Stop::Timeout,
                    () = watch.closed() => Stop::Gone,
                }
            };
            tokio::select! {
                biased;
                next = self.stream.next() => match next {
                    Some(Ok(batch)) if batch.num_rows() > 0 => self.pending = Some((batch, 0)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(query_error(e)),
                    None => self.done = true,
                },
                stop = stop => return Err(match stop {
                    Stop::Cancelled => error("57014", "canceling statement due to user request".into()),
                    Stop::Timeout => error("57014", "canceling statement due to statement timeout".into()),
                    Stop::Gone => PgWireError::IoError(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the client went away")),
                }),
            }
        }
    }
}

/// A connection's own state.
struct Conn {
    shared: Arc<Shared>,
    watch: PeerWatch,
    session: Option<Arc<QuerySession>>,
    /// Portals whose rows were suspended by Execute's row limit.
    portals: HashMap<String, (Arc<Portal<PgStatement>>, Rows)>,
    /// Where cancel requests find this connection.
    cancel_key: Option<(i32, bytes::Bytes)>,
}

/// The tag a statement that returns no rows answers with.
fn command_tag(command: &Command) -> &'static str {
    use datafusion::sql::parser::Statement as Df;
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match command {
        Command::Query(s) => match s.as_ref() {
            Df::Statement(s) => match s.as_ref() {
                Sql::Set(_) => "SET",
                Sql::Reset(_) => "RESET",
                _ => "OK",
            },
            _ => "OK",
        },
        _ => "OK",
    }
}

fn is_gone(e: &PgWireError) -> bool {
    matches!(e, PgWireError::IoError(_))
}

/// Serves one connection until it ends.
pub(super) async fn serve(mut socket: Socket, shared: Arc<Shared>, peer: Peer) {
    socket.session_extensions().insert(peer);
    let _permit = match shared.connections.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => {
            socket.session_extensions().insert(OverLimit(shared.max_connections));
            None
        }
    };
    let watch = PeerWatch::new(socket.get_ref());
    let mut conn = Conn { shared: shared.clone(), watch, session: None, portals: HashMap::new(), cancel_key: None };
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let message = if starting {
            tokio::select! {
                () = &mut startup => break,
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let Some(Ok(message)) = message else { break };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended = message.is_extended_query();
        let ready =
            matches!(socket.state(), PgWireConnectionState::ReadyForQuery | PgWireConnectionState::QueryInProgress);
        if ready && conn.session.is_none() {
            match conn.open(&socket).await {
                Ok(()) => {}
                Err(e) => {
                    let _ = process_error(&mut socket, e, false).await;
                    break;
                }
            }
        }
        let result = match message {
            PgWireFrontendMessage::Query(q) if ready => conn.simple(&mut socket, &q.query).await,
            PgWireFrontendMessage::Execute(e) if ready => conn.execute(&mut socket, e).await,
            m => {
                if ready {
                    conn.forget(&m);
                }
                process_message(
                    m,
                    &mut socket,
                    shared.startup.clone(),
                    shared.noop.clone(),
                    shared.extended.clone(),
                    shared.noop.clone(),
                    shared.cancels.clone(),
                )
                .await
            }
        };
        if let Err(e) = result {
            if is_gone(&e) {
                break;
            }
            let fatal = e.is_fatal();
            if process_error(&mut socket, e, extended).await.is_err() || fatal {
                break;
            }
        }
    }
    // the session, its cursors and portals (and their live subscriptions)
    // go with the connection
    if let Some(key) = conn.cancel_key.take() {
        shared.cancels.lock().remove(&key);
    }
}

impl Conn {
    /// The connection's session, made once it is authenticated.
    async fn open(&mut self, socket: &Socket) -> PgWireResult<()> {
        let (engine, policy) = (self.shared.engine.clone(), self.shared.policy.clone());
        let session = tokio::task::spawn_blocking(move || super::catalog::session(&engine, policy))
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?
            .map_err(query_error)?;
        socket.session_extensions().insert(session);
        self.session = Some(session_of(socket)?);
        let (pid, key) = socket.pid_and_secret_key();
        let key = (pid, key.to_bytes());
        socket.session_extensions().insert(CancelState::default());
        if let Some(state) = socket.session_extensions().get::<CancelState>() {
            self.shared.cancels.lock().insert(key.clone(), state);
            self.cancel_key = Some(key);
        }
        Ok(())
    }

    fn session(&self) -> PgWireResult<Arc<QuerySession>> {
        self.session.clone().ok_or(PgWireError::NotReadyForQuery)
    }

    /// Forgets suspended rows of portals a message ends.
    fn forget(&mut self, message: &PgWireFrontendMessage) {
        match message {
            PgWireFrontendMessage::Sync(_) => {
                self.portals.remove(DEFAULT_NAME);
            }
            PgWireFrontendMessage::Close(c) if c.target_type == b'P' => {
                self.portals.remove(c.name.as_deref().unwrap_or(DEFAULT_NAME));
            }
            _ => {}
        }
    }

    /// A simple query: its statements in turn, each answered, then ReadyForQuery.
    async fn simple(&mut self, socket: &mut Socket, sql: &str) -> PgWireResult<()> {
        let parser = &self.shared.extended.parser;
        match statement::parse(&parser.pg, &parser.policy, sql) {
            Ok(commands) if commands.is_empty() => {
                socket.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
            }
            Ok(commands) => {
                let continues = matches!(commands.first(), Some(Command::Fetch { .. }));
                let mut cancel = Cancel::start(socket, continues);
                for command in commands {
                    if let Err(e) = self.run(socket, command, vec![], None, &mut cancel).await {
                        if is_gone(&e) || !matches!(e, PgWireError::UserError(_)) {
                            return Err(e);
                        }
                        self.failed(socket, e).await?;
                        break;
                    }
                }
            }
            Err(e) => self.failed(socket, query_error(e)).await?,
        }
        let status = socket.transaction_status();
        socket.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status))).await?;
        Ok(())
    }

    /// Reports a statement's error; an open transaction is now failed.
    async fn failed(&mut self, socket: &mut Socket, e: PgWireError) -> PgWireResult<()> {
        let info: pgwire_server::error::ErrorInfo = e.into();
        socket.feed(PgWireBackendMessage::ErrorResponse(info.into())).await?;
        if socket.transaction_status() != TransactionStatus::Idle {
            socket.set_transaction_status(TransactionStatus::Error);
        }
        Ok(())
    }

    /// Execute of the extended protocol.
    async fn execute(&mut self, socket: &mut Socket, message: Execute) -> PgWireResult<()> {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME).to_string();
        let portal = match socket.portal_store().get_portal(&name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                socket.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(name)),
        };
        let max = usize::try_from(message.max_rows).ok().filter(|n| *n > 0);
        let continues =
            self.portals.contains_key(&name) || matches!(&portal.statement.statement.command, Command::Fetch { .. });
        let mut cancel = Cancel::start(socket, continues);
        let fields = Arc::new(types::fields(&portal.statement.statement.schema, Some(&portal.result_column_format)));
        // a suspended portal goes on
        if let Some((held, mut rows)) = self.portals.remove(&name) {
            if Arc::ptr_eq(&held, &portal) {
                let (n, more) = rows.send(socket, &fields, max, &mut cancel, &self.watch).await?;
                return self.finish(socket, "SELECT", n, more.then_some((name, held, rows))).await;
            }
        }
        let statement = &portal.statement.statement;
        let mut values = Vec::with_capacity(portal.parameter_len());
        for i in 0..portal.parameter_len() {
            let t = statement.params.get(i).cloned().unwrap_or(Type::UNKNOWN);
            let want = statement.param_types.get(i).cloned().flatten();
            let binary = portal.parameter_format.is_binary(i);
            values.push(types::parameter(portal.parameters[i].as_ref(), &t, binary, want.as_ref()).map_err(
                |e| match e {
                    PgWireError::UserError(_) => e,
                    e => error("22P02", format!("parameter ${}: {e}", i + 1)),
                },
            )?);
        }
        let run = Run { format: Some(portal.result_column_format.clone()), max, portal: Some((name, portal.clone())) };
        self.run(socket, statement.command.clone(), values, Some(run), &mut cancel).await
    }

    /// Sends the end of a result: CommandComplete, or PortalSuspended with
    /// the rest kept for the next Execute.
    async fn finish(
        &mut self,
        socket: &mut Socket,
        tag: &str,
        n: usize,
        rest: Option<(String, Arc<Portal<PgStatement>>, Rows)>,
    ) -> PgWireResult<()> {
        match rest {
            Some((name, portal, rows)) => {
                self.portals.insert(name, (portal, rows));
                socket.send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new())).await?;
            }
            None => {
                socket.send(PgWireBackendMessage::CommandComplete(Tag::new(tag).with_rows(n).into())).await?;
            }
        }
        Ok(())
    }

    /// Runs one statement and answers it (in the simple protocol when `run`
    /// is `None`: with its row description, in text).
    async fn run(
        &mut self,
        socket: &mut Socket,
        command: Command,
        params: Vec<ScalarValue>,
        run: Option<Run>,
        cancel: &mut Cancel,
    ) -> PgWireResult<()> {
        let status = socket.transaction_status();
        if status == TransactionStatus::Error && !matches!(command, Command::Commit | Command::Rollback) {
            return Err(error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block".into(),
            ));
        }
        let cursors = cursors_of(socket);
        match command {
            Command::Begin => {
                socket.set_transaction_status(TransactionStatus::Transaction);
                complete(socket, "BEGIN").await
            }
            Command::Commit | Command::Rollback => {
                let tag = if matches!(command, Command::Commit) && status != TransactionStatus::Error {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                cursors.lock().clear();
                socket.set_transaction_status(TransactionStatus::Idle);
                complete(socket, tag).await
            }
            Command::Nothing(tag) => complete(socket, tag).await,
            Command::Show { name, value } => {
                let schema = show_schema(&name);
                let fields = Arc::new(types::fields(&schema, run.as_ref().and_then(|r| r.format.as_ref())));
                if run.is_none() {
                    describe(socket, &fields).await?;
                }
                let batch = RecordBatch::try_new(
                    schema,
                    vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![value]))],
                )
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                let mut rows = std::collections::VecDeque::new();
                types::encode(&batch, &fields, &mut rows)?;
                for row in rows {
                    socket.feed(PgWireBackendMessage::DataRow(row)).await?;
                }
                complete(socket, "SHOW").await
            }
            Command::Declare { name, query } => {
                if status != TransactionStatus::Transaction {
                    return Err(error("25P01", "DECLARE CURSOR can only be used in transaction blocks".into()));
                }
                if cursors.lock().contains_key(&name) {
                    return Err(error("42P03", format!("cursor \"{name}\" already exists")));
                }
                let session = self.session()?;
                let prepared = session.prepare(*query).await.map_err(query_error)?;
                let prepared = prepared.bind(params).map_err(query_error)?;
                let stream = session.execute(prepared).await.map_err(query_error)?;
                let rows = Rows::new(stream, self.shared.statement_timeout);
                cursors.lock().insert(name, Cursor { schema: rows.schema(), rows: Some(rows) });
                complete(socket, "DECLARE CURSOR").await
            }
            Command::Fetch { name, count } => {
                let taken = cursors.lock().get_mut(&name).map(|c| c.rows.take());
                let mut rows = match taken {
                    Some(Some(rows)) => rows,
                    _ => return Err(error("34000", format!("cursor \"{name}\" does not exist"))),
                };
                let fields = Arc::new(types::fields(&rows.schema(), run.as_ref().and_then(|r| r.format.as_ref())));
                if run.is_none() {
                    describe(socket, &fields).await?;
                }
                match rows.send(socket, &fields, count, cancel, &self.watch).await {
                    Ok((n, _)) => {
                        if let Some(c) = cursors.lock().get_mut(&name) {
                            c.rows = Some(rows);
                        }
                        socket
                            .feed(PgWireBackendMessage::CommandComplete(Tag::new("FETCH").with_rows(n).into()))
                            .await?;
                        Ok(())
                    }
                    Err(e) => {
                        // a failed cursor is gone, and its subscriptions with it
                        cursors.lock().remove(&name);
                        Err(e)
                    }
                }
            }
            Command::Close(name) => {
                match name {
                    Some(name) => {
                        if cursors.lock().remove(&name).is_none() {
                            return Err(error("34000", format!("cursor \"{name}\" does not exist")));
                        }
                    }
                    None => cursors.lock().clear(),
                }
                complete(socket, "CLOSE CURSOR").await
            }
            Command::Query(statement) => {
                let tag = command_tag(&Command::Query(statement.clone()));
                let session = self.session()?;
                let prepared = session.prepare(*statement).await.map_err(query_error)?;
                let prepared = prepared.bind(params).map_err(query_error)?;
                let kind = prepared.kind();
                let stream = session.execute(prepared).await.map_err(query_error)?;
                if kind == Kind::Command {
                    let mut stream = stream;
                    while let Some(batch) = stream.next().await {
                        batch.map_err(query_error)?;
                    }
                    return complete(socket, tag).await;
                }
                let mut rows = Rows::new(stream, self.shared.statement_timeout);
                let format = run.as_ref().and_then(|r| r.format.clone());
                let fields = Arc::new(types::fields(&rows.schema(), format.as_ref()));
                let (max, portal) = match run {
                    Some(Run { max, portal, .. }) => (max, portal),
                    None => {
                        describe(socket, &fields).await?;
                        (None, None)
                    }
                };
                let (n, more) = rows.send(socket, &fields, max, cancel, &self.watch).await?;
                let rest = match (more, portal) {
                    (true, Some((name, portal))) => Some((name, portal, rows)),
                    _ => None,
                };
                self.finish(socket, "SELECT", n, rest).await
            }
        }
    }
}

async fn complete(socket: &mut Socket, tag: &str) -> PgWireResult<()> {
    socket.feed(PgWireBackendMessage::CommandComplete(Tag::new(tag).into())).await?;
    Ok(())
}

async fn describe(socket: &mut Socket, fields: &[FieldInfo]) -> PgWireResult<()> {
    let description = RowDescription::new(fields.iter().map(Into::into).collect());
    socket.feed(PgWireBackendMessage::RowDescription(description)).await?;
    Ok(())
}

/// How Execute runs a statement: the portal's formats and row limit.
struct Run {
    format: Option<Format>,
    max: Option<usize>,
    portal: Option<(String, Arc<Portal<PgStatement>>)>,
}

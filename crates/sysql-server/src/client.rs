//! Asking an agent over its unix socket: the shell's and `-c`'s side of the
//! Flight SQL endpoint. Each client picks a session id, so its views and
//! settings stay with it on the agent.

use crate::{error_kind_from, kind_from, AgentInfo, ERROR_KIND_HEADER, INFO_ACTION, SESSION_HEADER, VERSION};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, Ticket};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sysql_engine::query::{ErrorKind, Kind, QueryError};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why an agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there (no agent runs).
    #[error("no sysql agent at {0}")]
    Absent(PathBuf),
    /// The socket is there but this user may not open it.
    #[error("cannot open the agent's socket {0}: permission denied (it is root's)")]
    Denied(PathBuf),
    #[error("the sysql agent at {path} is version {agent}, this sysql is {ours}: use the same version")]
    Version { path: PathBuf, agent: String, ours: String },
    #[error("cannot reach the sysql agent at {0}: {1}")]
    Other(PathBuf, String),
}

/// A connection to an agent.
pub struct AgentClient {
    channel: Channel,
    session: String,
    info: AgentInfo,
    path: PathBuf,
}

/// A statement the agent prepared.
pub struct Prepared {
    pub kind: Kind,
    pub schema: SchemaRef,
    ticket: Ticket,
    /// What a user should know before reading the result (see
    /// `sysql_engine::query::Prepared::notices`).
    pub notices: Vec<String>,
}

/// A query error from a status (its kind from its header).
fn query_error(e: FlightError) -> QueryError {
    match e {
        FlightError::Tonic(status) => {
            let kind =
                status.metadata().get(ERROR_KIND_HEADER).and_then(|v| v.to_str().ok()).map(error_kind_from).unwrap_or(
                    match status.code() {
                        tonic::Code::Unavailable | tonic::Code::Unknown => ErrorKind::Execution,
                        tonic::Code::Cancelled => ErrorKind::Cancelled,
                        _ => ErrorKind::Execution,
                    },
                );
            let message = if status.code() == tonic::Code::Unavailable {
                format!("lost the sysql agent: {}", status.message())
            } else {
                status.message().to_string()
            };
            QueryError::new(kind, message)
        }
        other => QueryError::new(ErrorKind::Execution, other.to_string()),
    }
}

impl AgentClient {
    /// Connects to the agent at `path` and checks it runs this version.
    pub async fn connect(path: &Path) -> Result<AgentClient, ConnectError> {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ConnectError::Denied(path.to_path_buf()))
            }
            Err(_) => return Err(ConnectError::Absent(path.to_path_buf())),
        }
        let socket = path.to_path_buf();
        let endpoint = Endpoint::from_static("http://sysql.agent");
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(UnixStream::connect(socket).await?)) }
            }))
            .await
            .map_err(|e| ConnectError::Other(path.to_path_buf(), e.to_string()))?;
        let session = format!("{}-{}", std::process::id(), crate::flight_nonce());
        let mut client = AgentClient { channel, session, info: AgentInfo::decode(""), path: path.to_path_buf() };
        let info = client.fetch_info().await.map_err(|e| ConnectError::Other(path.to_path_buf(), e.message))?;
        if info.version != VERSION {
            return Err(ConnectError::Version { path: path.to_path_buf(), agent: info.version, ours: VERSION.into() });
        }
        client.info = info;
        Ok(client)
    }

    fn client(&self) -> FlightSqlServiceClient<Channel> {
        let mut c = FlightSqlServiceClient::new(self.channel.clone());
        c.set_header(SESSION_HEADER, self.session.clone());
        c
    }

    pub fn info(&self) -> &AgentInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn fetch_info(&self) -> Result<AgentInfo, QueryError> {
        let mut c = self.client();
        let action = Action { r#type: INFO_ACTION.into(), body: Default::default() };
        let mut results = c.do_action(action).await.map_err(query_error)?;
        let body = match results.next().await {
            Some(Ok(r)) => r.body,
            Some(Err(status)) => return Err(query_error(FlightError::Tonic(Box::new(status)))),
            None => Default::default(),
        };
        Ok(AgentInfo::decode(&String::from_utf8_lossy(&body)))
    }

    /// Refreshes what the agent says of itself.
    pub async fn refresh_info(&mut self) -> Result<&AgentInfo, QueryError> {
        self.info = self.fetch_info().await?;
        Ok(&self.info)
    }

    /// Checks and plans a statement on the agent.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared, QueryError> {
        let mut c = self.client();
        let info = c.execute(sql.to_string(), None).await.map_err(query_error)?;
        // the kind, then a notice per line
        let mut lines = info.app_metadata.split(|b| *b == b'\n');
        let kind = lines.next().and_then(kind_from).unwrap_or(Kind::Bounded);
        let notices = lines.map(|l| String::from_utf8_lossy(l).into_owned()).collect();
        let schema: Schema =
            info.clone().try_decode_schema().map_err(|e| QueryError::new(ErrorKind::Execution, e.to_string()))?;
        let ticket = info
            .endpoint
            .first()
            .and_then(|e| e.ticket.clone())
            .ok_or_else(|| QueryError::new(ErrorKind::Execution, "the agent gave no ticket"))?;
        Ok(Prepared { kind, schema: Arc::new(schema), ticket, notices })
    }

    /// Runs a prepared statement; dropping the stream stops it on the agent.
    pub async fn execute(
        &self,
        prepared: Prepared,
    ) -> Result<BoxStream<'static, Result<RecordBatch, QueryError>>, QueryError> {
        let mut c = self.client();
        let stream = c.do_get(prepared.ticket).await.map_err(query_error)?;
        Ok(stream.map_err(query_error).boxed())
    }
}

//! Connection identity and resume: the `hello` that starts (or refuses to
//! resume) a session, the first frame that confirms a resume, and giving up
//! on resuming after repeated failures. A refused resume schedules a REST
//! catch-up, since events may have been lost.

use std::time::Instant;

use super::LinkState;
use super::socket::{Conn, End, Worker};
use crate::mattermost::types::Event;

/// Resume attempts that open a socket but never get a first frame before the
/// link stops resuming and asks for a fresh connection.
const RESUME_TRIES: u32 = 3;

/// What the server gave us for a connection.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) connection_id: String,
    pub(super) next_seq: i64,
    server_version: String,
}

impl Worker {
    pub(super) fn resume_failed(&mut self) {
        self.resume_failures += 1;
        if self.resume_failures >= RESUME_TRIES {
            tracing::warn!("resume keeps failing; asking for a fresh connection");
            self.session = None;
            self.resume_failures = 0;
        }
    }

    /// Marks the connection up and publishes the state.
    fn established(&mut self, conn: &mut Conn) {
        conn.established = true;
        self.resume_failures = 0;
        let (connection_id, server_version) = self
            .session
            .as_ref()
            .map(|s| (s.connection_id.clone(), s.server_version.clone()))
            .unwrap_or_default();
        self.last_connection_id = Some(connection_id.clone());
        self.state.send_replace(LinkState::Connected {
            connection_id,
            server_version,
            since: Instant::now(),
        });
    }

    /// Confirms a resume on its first frame.
    pub(super) fn resumed(&mut self, conn: &mut Conn) {
        tracing::info!("resumed; no event lost");
        self.shared.stats(|s| {
            s.resumes += 1;
            s.reconnects += 1;
        });
        self.established(conn);
    }

    pub(super) async fn on_hello(&mut self, event: &Event, conn: &mut Conn) -> Result<(), End> {
        let connection_id = event.str_field("connection_id").unwrap_or("").to_owned();
        let server_version = event.str_field("server_version").unwrap_or("").to_owned();
        let lost = self
            .last_connection_id
            .as_ref()
            .is_some_and(|old| *old != connection_id);
        let had_connection = self.last_connection_id.is_some();
        tracing::Span::current().record("connection_id", connection_id.as_str());
        tracing::info!(
            server_version = %server_version,
            resumed_refused = conn.resuming && lost,
            "connected"
        );
        self.session = Some(Session {
            connection_id,
            next_seq: event.seq + 1,
            server_version,
        });
        self.shared.stats(|s| {
            s.connects += 1;
            if had_connection && !conn.established {
                s.reconnects += 1;
            }
            if conn.resuming && !conn.established {
                if lost {
                    s.resumes_refused += 1;
                } else {
                    s.resumes += 1;
                }
            }
        });
        if lost {
            self.schedule_catch_up();
        }
        self.established(conn);
        self.run_catch_up().await
    }
}

//! The supervisor's table of running requests. Exec sessions outlive the client that started
//! them when they run on a terminal: a later client can list them and attach, and gets the
//! recent output replayed first.

use msb_protocol::control::SessionInfo;
use msb_protocol::guest::ExecRequest;
use msb_protocol::Frame;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Recent output kept per session for replay on attach.
pub const REPLAY_BYTES: usize = 64 * 1024;

/// A connected client: where frames for it are written.
pub trait Peer: Send + Sync {
    fn send(&self, frame: &Frame) -> bool;
    /// Forgets the request `client_id` (its session ended or moved to another client).
    fn forget(&self, client_id: u32);
}

pub struct Owner {
    pub peer: Arc<dyn Peer>,
    pub client_id: u32,
}

pub struct Session {
    /// `None` for requests that are not commands (ping).
    pub info: Option<SessionInfo>,
    pub owner: Option<Owner>,
    replay: VecDeque<Frame>,
    replay_bytes: usize,
}

impl Session {
    pub fn new(owner: Owner, info: Option<SessionInfo>) -> Self {
        Self {
            info,
            owner: Some(owner),
            replay: VecDeque::new(),
            replay_bytes: 0,
        }
    }

    pub fn for_exec(session: u32, request: &ExecRequest, owner: Owner, now_ms: u64) -> Self {
        let info = SessionInfo {
            session,
            program: request.program.clone(),
            args: request.args.clone(),
            tty: request.tty.is_some(),
            started_at_ms: now_ms,
            attached: true,
        };
        Self::new(owner, Some(info))
    }

    /// Whether the session keeps running without a client.
    pub fn survives_disconnect(&self) -> bool {
        self.info.as_ref().is_some_and(|info| info.tty)
    }

    /// Keeps a copy of an output frame, dropping the oldest beyond [`REPLAY_BYTES`].
    pub fn remember(&mut self, frame: &Frame) {
        if self.info.is_none() {
            return;
        }
        self.replay_bytes += frame.body.len();
        self.replay.push_back(frame.clone());
        while self.replay_bytes > REPLAY_BYTES && self.replay.len() > 1 {
            let dropped = self.replay.pop_front().expect("non-empty");
            self.replay_bytes -= dropped.body.len();
        }
    }

    pub fn replay(&self) -> impl Iterator<Item = &Frame> {
        self.replay.iter()
    }

    pub fn listing(&self) -> Option<SessionInfo> {
        let mut info = self.info.clone()?;
        info.attached = self.owner.is_some();
        Some(info)
    }
}

/// Sessions by agent request id.
#[derive(Default)]
pub struct SessionTable {
    pub by_id: HashMap<u32, Session>,
}

impl SessionTable {
    pub fn listing(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> =
            self.by_id.values().filter_map(Session::listing).collect();
        sessions.sort_by_key(|info| info.session);
        sessions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<u32>>);

    impl Peer for Recorder {
        fn send(&self, frame: &Frame) -> bool {
            self.0.lock().unwrap().push(frame.id);
            true
        }
        fn forget(&self, _: u32) {}
    }

    fn exec(tty: bool) -> Session {
        let request = ExecRequest {
            program: "sh".into(),
            tty: tty.then_some(msb_protocol::guest::TerminalSize { rows: 24, cols: 80 }),
            ..ExecRequest::default()
        };
        Session::for_exec(
            7,
            &request,
            Owner {
                peer: Arc::new(Recorder::default()),
                client_id: 1,
            },
            0,
        )
    }

    #[test]
    fn replay_keeps_only_the_most_recent_output() {
        let mut session = exec(true);
        for index in 0..10u32 {
            session.remember(&Frame {
                id: index,
                flags: 0,
                body: vec![0; REPLAY_BYTES / 4],
            });
        }
        let kept: Vec<u32> = session.replay().map(|frame| frame.id).collect();
        assert_eq!(kept, vec![6, 7, 8, 9]);
    }

    #[test]
    fn only_terminal_sessions_survive_their_client() {
        assert!(exec(true).survives_disconnect());
        assert!(!exec(false).survives_disconnect());
    }

    #[test]
    fn listing_reports_attachment() {
        let mut session = exec(true);
        assert!(session.listing().unwrap().attached);
        session.owner = None;
        assert!(!session.listing().unwrap().attached);
    }
}

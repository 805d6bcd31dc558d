//! Turning an `ExecRequest` into everything the child needs, checked up front: the
//! child may only make async-signal-safe calls, so all parsing and allocation happens here.

use crate::users::{self, Identity, UserError};
use msb_protocol::guest::{AgentErrorKind, ExecRequest, ResourceLimit};
use std::ffi::CString;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const TERMINAL_TYPE: &str = "xterm-256color";

pub type Resource = libc::__rlimit_resource_t;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the program name is empty")]
    EmptyProgram,
    #[error("{0} contains a NUL byte")]
    NulByte(&'static str),
    #[error("invalid environment variable name {0:?}")]
    BadEnvName(String),
    #[error("unknown resource limit {0:?} (known: cpu fsize data stack core rss nproc nofile memlock as locks sigpending msgqueue nice rtprio rttime)")]
    UnknownRlimit(String),
    #[error("resource limit {name}: soft limit {soft} exceeds hard limit {hard}")]
    SoftAboveHard { name: String, soft: u64, hard: u64 },
    #[error(transparent)]
    User(#[from] UserError),
}

impl PlanError {
    pub fn kind(&self) -> AgentErrorKind {
        match self {
            PlanError::User(_) => AgentErrorKind::UnknownUser,
            _ => AgentErrorKind::InvalidRequest,
        }
    }
}

/// A validated request, ready for the child (see [`super::child`]).
#[derive(Debug)]
pub struct Plan {
    /// Paths to try with `execve`, in order (the `PATH` search, or the one given path).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: CString,
    pub identity: Option<Identity>,
    pub rlimits: Vec<(Resource, libc::rlimit)>,
}

/// Maps a resource name (`nofile`, `as`, ...) to its `RLIMIT_*` constant.
pub fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "cpu" => libc::RLIMIT_CPU,
        "fsize" => libc::RLIMIT_FSIZE,
        "data" => libc::RLIMIT_DATA,
        "stack" => libc::RLIMIT_STACK,
        "core" => libc::RLIMIT_CORE,
        "rss" => libc::RLIMIT_RSS,
        "nproc" => libc::RLIMIT_NPROC,
        "nofile" => libc::RLIMIT_NOFILE,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "as" => libc::RLIMIT_AS,
        "locks" => libc::RLIMIT_LOCKS,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn rlimits(limits: &[ResourceLimit]) -> Result<Vec<(Resource, libc::rlimit)>, PlanError> {
    limits
        .iter()
        .map(|limit| {
            let resource = rlimit_resource(&limit.resource)
                .ok_or_else(|| PlanError::UnknownRlimit(limit.resource.clone()))?;
            if limit.soft > limit.hard {
                return Err(PlanError::SoftAboveHard {
                    name: limit.resource.clone(),
                    soft: limit.soft,
                    hard: limit.hard,
                });
            }
            Ok((
                resource,
                libc::rlimit {
                    rlim_cur: limit.soft,
                    rlim_max: limit.hard,
                },
            ))
        })
        .collect()
}

/// The agent's defaults (`PATH`, `HOME`, and `TERM` on a terminal) overlaid with the
/// request's variables; a later duplicate replaces an earlier one in place.
pub fn environment(
    home: &str,
    terminal: bool,
    overrides: &[(String, String)],
) -> Result<Vec<(String, String)>, PlanError> {
    let mut env = vec![
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), home.to_string()),
    ];
    if terminal {
        env.push(("TERM".to_string(), TERMINAL_TYPE.to_string()));
    }
    for (key, value) in overrides {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(PlanError::BadEnvName(key.clone()));
        }
        match env.iter_mut().find(|(existing, _)| existing == key) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((key.clone(), value.clone())),
        }
    }
    Ok(env)
}

/// Where `execve` should look for `program`, like `execvp`: a name with a slash is used as
/// it is (relative to the working directory); otherwise each `PATH` entry in turn, an empty
/// entry meaning the working directory.
pub fn candidates(program: &str, search_path: &str) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    search_path
        .split(':')
        .map(|dir| match dir.trim_end_matches('/') {
            "" if dir.is_empty() => program.to_string(),
            "" => format!("/{program}"),
            dir => format!("{dir}/{program}"),
        })
        .collect()
}

fn cstring(text: &str, what: &'static str) -> Result<CString, PlanError> {
    CString::new(text).map_err(|_| PlanError::NulByte(what))
}

pub fn plan(request: &ExecRequest, passwd: &str, group: &str) -> Result<Plan, PlanError> {
    if request.program.is_empty() {
        return Err(PlanError::EmptyProgram);
    }
    let identity = request
        .user
        .as_deref()
        .map(|spec| users::resolve(spec, passwd, group))
        .transpose()?;
    let home = identity.as_ref().map_or_else(
        || users::root_home(passwd),
        |identity| identity.home.clone(),
    );
    let env = environment(&home, request.tty.is_some(), &request.env)?;
    let search_path = env
        .iter()
        .find(|(key, _)| key == "PATH")
        .map_or("", |(_, value)| value.as_str());
    Ok(Plan {
        candidates: candidates(&request.program, search_path)
            .iter()
            .map(|path| cstring(path, "the program"))
            .collect::<Result<_, _>>()?,
        argv: std::iter::once(&request.program)
            .chain(&request.args)
            .map(|arg| cstring(arg, "an argument"))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|(key, value)| cstring(&format!("{key}={value}"), "the environment"))
            .collect::<Result<_, _>>()?,
        cwd: cstring(
            request.cwd.as_deref().unwrap_or("/"),
            "the working directory",
        )?,
        identity,
        rlimits: rlimits(&request.rlimits)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_protocol::guest::TerminalSize;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

    #[test]
    fn all_sixteen_rlimits_are_known() {
        let names = [
            "cpu",
            "fsize",
            "data",
            "stack",
            "core",
            "rss",
            "nproc",
            "nofile",
            "memlock",
            "as",
            "locks",
            "sigpending",
            "msgqueue",
            "nice",
            "rtprio",
            "rttime",
        ];
        let resources: std::collections::HashSet<_> = names
            .iter()
            .map(|name| rlimit_resource(name).unwrap())
            .collect();
        assert_eq!(
            resources.len(),
            16,
            "every name maps to a distinct resource"
        );
        assert_eq!(rlimit_resource("nofile"), Some(libc::RLIMIT_NOFILE));
        assert_eq!(rlimit_resource("NOFILE"), None);
        assert_eq!(rlimit_resource("bogus"), None);
    }

    #[test]
    fn rlimits_are_validated() {
        let limit = |resource: &str, soft, hard| ResourceLimit {
            resource: resource.into(),
            soft,
            hard,
        };
        assert_eq!(
            rlimits(&[limit("nofile", 64, 128)]).unwrap()[0].1.rlim_cur,
            64
        );
        assert_eq!(
            rlimits(&[limit("files", 1, 1)]).unwrap_err(),
            PlanError::UnknownRlimit("files".into())
        );
        assert!(matches!(
            rlimits(&[limit("nofile", 9, 8)]),
            Err(PlanError::SoftAboveHard { .. })
        ));
    }

    #[test]
    fn environment_defaults_and_overrides() {
        let env = environment("/root", false, &[]).unwrap();
        assert_eq!(
            env,
            [
                ("PATH".into(), DEFAULT_PATH.into()),
                ("HOME".into(), "/root".into())
            ]
        );
        let env = environment(
            "/root",
            true,
            &[("HOME".into(), "/h".into()), ("A".into(), "1".into())],
        )
        .unwrap();
        assert_eq!(
            env,
            [
                ("PATH".to_string(), DEFAULT_PATH.to_string()),
                ("HOME".into(), "/h".into()),
                ("TERM".into(), "xterm-256color".into()),
                ("A".into(), "1".into()),
            ]
        );
        assert_eq!(
            environment("/", false, &[("A=B".into(), "1".into())]),
            Err(PlanError::BadEnvName("A=B".into()))
        );
    }

    #[test]
    fn path_search_candidates() {
        assert_eq!(
            candidates("sh", "/usr/bin:/bin/"),
            ["/usr/bin/sh", "/bin/sh"]
        );
        assert_eq!(candidates("./run", "/bin"), ["./run"]);
        assert_eq!(candidates("/bin/sh", "/nothing"), ["/bin/sh"]);
        assert_eq!(candidates("tool", "/a::/b"), ["/a/tool", "tool", "/b/tool"]);
        assert_eq!(candidates("tool", "/"), ["/tool"]);
    }

    #[test]
    fn plans_use_the_user_and_the_terminal() {
        let request = ExecRequest {
            program: "ls".into(),
            args: vec!["-l".into()],
            user: Some("nobody".into()),
            tty: Some(TerminalSize { rows: 24, cols: 80 }),
            ..ExecRequest::default()
        };
        let plan = plan(&request, PASSWD, "").unwrap();
        assert_eq!(plan.argv, [c"ls".to_owned(), c"-l".to_owned()]);
        assert!(plan.envp.contains(&c"HOME=/nonexistent".to_owned()));
        assert!(plan.envp.contains(&c"TERM=xterm-256color".to_owned()));
        assert_eq!(plan.cwd, c"/".to_owned());
        assert_eq!(plan.identity.unwrap().uid, 65534);
        assert_eq!(plan.candidates[0], c"/usr/local/sbin/ls".to_owned());
    }

    #[test]
    fn bad_requests_have_typed_kinds() {
        let request = |program: &str, user: Option<&str>| ExecRequest {
            program: program.into(),
            user: user.map(String::from),
            ..ExecRequest::default()
        };
        assert_eq!(
            plan(&request("", None), PASSWD, "").unwrap_err().kind(),
            AgentErrorKind::InvalidRequest
        );
        assert_eq!(
            plan(&request("a\0b", None), PASSWD, "").unwrap_err().kind(),
            AgentErrorKind::InvalidRequest
        );
        assert_eq!(
            plan(&request("sh", Some("ghost")), PASSWD, "")
                .unwrap_err()
                .kind(),
            AgentErrorKind::UnknownUser
        );
        let home = plan(&request("sh", None), PASSWD, "").unwrap().envp;
        assert!(home.contains(&c"HOME=/root".to_owned()));
    }
}

//! Users and groups from the guest's `/etc/passwd` and `/etc/group`, parsed directly: a
//! static binary cannot use glibc's NSS, and the image need not have it anyway.

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, the primary group included.
    pub groups: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user {0:?} in the guest's /etc/passwd")]
    UnknownUser(String),
    #[error("no group {0:?} in the guest's /etc/group")]
    UnknownGroup(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0],
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: fields[0],
            gid: fields[2].parse().ok()?,
            members: fields[3],
        })
    })
}

/// Resolves `user`, `uid`, `user:group` or `uid:gid` against the texts of passwd and group.
///
/// A numeric uid need not exist in passwd (as with container runtimes); it then gets the
/// same number as its gid rather than root's group, and `/` as its home.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, UserError> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let by_name = passwd_entries(passwd).find(|entry| entry.name == user);
    let numeric: Option<u32> = user.parse().ok();
    let entry = by_name
        .or_else(|| numeric.and_then(|uid| passwd_entries(passwd).find(|entry| entry.uid == uid)));
    let (uid, mut gid, home, name) = match (entry, numeric) {
        (Some(entry), _) => (
            entry.uid,
            entry.gid,
            entry.home.to_string(),
            Some(entry.name),
        ),
        (None, Some(uid)) => (uid, uid, "/".to_string(), None),
        (None, None) => return Err(UserError::UnknownUser(user.to_string())),
    };
    if let Some(group_spec) = group_spec {
        gid = match group_spec.parse() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|entry| entry.name == group_spec)
                .map(|entry| entry.gid)
                .ok_or_else(|| UserError::UnknownGroup(group_spec.to_string()))?,
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = name {
        for entry in group_entries(group) {
            if entry.members.split(',').any(|member| member.trim() == name)
                && !groups.contains(&entry.gid)
            {
                groups.push(entry.gid);
            }
        }
    }
    Ok(Identity {
        uid,
        gid,
        groups,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// The home directory of root, for the default environment of commands run as root.
pub fn root_home(passwd: &str) -> String {
    passwd_entries(passwd)
        .find(|entry| entry.uid == 0)
        .map(|entry| entry.home.to_string())
        .filter(|home| !home.is_empty())
        .unwrap_or_else(|| "/root".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnogroup:x:65534:\nstaff:x:50:app,other\naudio:x:29:app\napp:x:1000:\n";

    #[test]
    fn users_resolve_by_name_and_uid() {
        assert_eq!(
            resolve("nobody", PASSWD, GROUP).unwrap(),
            Identity {
                uid: 65534,
                gid: 65534,
                groups: vec![65534],
                home: "/nonexistent".into()
            }
        );
        assert_eq!(resolve("0", PASSWD, GROUP).unwrap().home, "/root");
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap().home, "/home/app");
    }

    #[test]
    fn supplementary_groups_come_from_group_membership() {
        assert_eq!(
            resolve("app", PASSWD, GROUP).unwrap().groups,
            vec![1000, 50, 29]
        );
    }

    #[test]
    fn explicit_groups_by_name_or_number() {
        let identity = resolve("nobody:staff", PASSWD, GROUP).unwrap();
        assert_eq!((identity.uid, identity.gid), (65534, 50));
        assert_eq!(resolve("app:7", PASSWD, GROUP).unwrap().gid, 7);
    }

    #[test]
    fn unknown_numeric_ids_are_allowed_but_names_are_not() {
        assert_eq!(
            resolve("4242:4343", PASSWD, GROUP).unwrap(),
            Identity {
                uid: 4242,
                gid: 4343,
                groups: vec![4343],
                home: "/".into()
            }
        );
        assert_eq!(resolve("4242", PASSWD, GROUP).unwrap().gid, 4242);
        assert_eq!(
            resolve("ghost", PASSWD, GROUP),
            Err(UserError::UnknownUser("ghost".into()))
        );
        assert_eq!(
            resolve("root:ghosts", PASSWD, GROUP),
            Err(UserError::UnknownGroup("ghosts".into()))
        );
    }

    #[test]
    fn root_home_defaults() {
        assert_eq!(root_home(PASSWD), "/root");
        assert_eq!(root_home(""), "/root");
        assert_eq!(root_home("root:x:0:0::/home/r:/bin/sh\n"), "/home/r");
    }
}

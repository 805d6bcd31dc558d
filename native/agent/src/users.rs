//! Users and groups from the guest's /etc/passwd and /etc/group. Parsed directly: a static
//! binary cannot use glibc's NSS, and the image may not have it anyway.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Resolves `user`, `uid`, `user:group` or `uid:gid` against passwd and group texts.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Option<Identity> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 7 && (fields[0] == user || fields[2] == user));
    let mut identity = match entry {
        Some(fields) => Identity {
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5].to_string(),
        },
        // A bare numeric uid need not exist in passwd.
        None => Identity {
            uid: user.parse().ok()?,
            gid: user.parse().ok()?,
            home: "/".into(),
        },
    };
    if let Some(group_spec) = group_spec {
        identity.gid = match group_spec.parse() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|fields| fields.len() >= 3 && fields[0] == group_spec)?[2]
                .parse()
                .ok()?,
        };
    }
    Some(identity)
}

/// The home directory of root, for the default environment.
pub fn root_home(passwd: &str) -> String {
    resolve("0", passwd, "")
        .map(|identity| identity.home)
        .unwrap_or_else(|| "/root".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n";

    #[test]
    fn names_ids_and_groups_resolve() {
        assert_eq!(
            resolve("nobody", PASSWD, GROUP).unwrap(),
            Identity {
                uid: 65534,
                gid: 65534,
                home: "/nonexistent".into()
            }
        );
        assert_eq!(resolve("0", PASSWD, GROUP).unwrap().home, "/root");
        assert_eq!(resolve("nobody:staff", PASSWD, GROUP).unwrap().gid, 50);
        assert_eq!(
            resolve("1000:1000", PASSWD, GROUP).unwrap(),
            Identity {
                uid: 1000,
                gid: 1000,
                home: "/".into()
            }
        );
        assert_eq!(resolve("ghost", PASSWD, GROUP), None);
        assert_eq!(resolve("root:ghosts", PASSWD, GROUP), None);
    }
}

//! `user USER [GROUP];`: the identity ferry serves as once it has bound its
//! addresses and opened its files, as nginx's workers do.
//!
//! nginx resolves the names when it reads the configuration (so `-t` fails
//! on a user that does not exist) and switches in each worker after the
//! master, still root, has bound the listening sockets. ferry's workers are
//! threads of one process, so the whole process switches, once, after every
//! worker has bound and the logs and pid file are open. What it cannot do as
//! that user any more (bind a new privileged port on reload, reopen a log
//! only root may write) fails then, with the error and no change, as a
//! reload that cannot open a file does.
//!
//! Without root there is nothing to switch: the line is ignored with
//! nginx's warning.
//!
//! In the course (docs/learn): chapter 7, "The order".

use std::ffi::CString;

use log::warn;
use nix::unistd::{self, Gid, Group, Uid, User};

/// A resolved `user` line: whom to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    uid: Uid,
    gid: Gid,
}

/// Resolves `user` and `group` (the user's own name when omitted, as in
/// nginx); the error is nginx's message. Not running as root, there is
/// nothing to switch: `Ok(None)` with nginx's warning (`where_` names the
/// line), unless ferry already is that user (a reload after the switch).
pub fn resolve(user: &str, group: Option<&str>, where_: &str) -> Result<Option<Identity>, String> {
    let root = unistd::geteuid().is_root();
    let looked_up = lookup(user, group.unwrap_or(user));
    match looked_up {
        Ok(identity) if root || identity.uid == unistd::geteuid() => Ok(Some(identity)),
        Err(e) if root => Err(e),
        _ => {
            warn!(
                "the \"user\" directive makes sense only if the master process runs with \
                 super-user privileges, ignored in {where_}"
            );
            Ok(None)
        }
    }
}

fn lookup(user: &str, group: &str) -> Result<Identity, String> {
    let found = User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| format!("getpwnam(\"{user}\") failed"))?;
    let gid = Group::from_name(group)
        .ok()
        .flatten()
        .ok_or_else(|| format!("getgrnam(\"{group}\") failed"))?
        .gid;
    Ok(Identity {
        user: user.to_string(),
        uid: found.uid,
        gid,
    })
}

/// Becomes `identity`: its group, its supplementary groups, then its user
/// (in that order: only root may change groups). Afterwards root is gone
/// for good, which is checked.
pub fn become_user(identity: &Identity) -> Result<(), String> {
    let name = CString::new(identity.user.as_str()).map_err(|e| e.to_string())?;
    unistd::setgid(identity.gid).map_err(|e| format!("setgid({}) failed: {e}", identity.gid))?;
    unistd::initgroups(&name, identity.gid).map_err(|e| {
        format!(
            "initgroups({}, {}) failed: {e}",
            identity.user, identity.gid
        )
    })?;
    unistd::setuid(identity.uid).map_err(|e| format!("setuid({}) failed: {e}", identity.uid))?;
    if unistd::setuid(Uid::from_raw(0)).is_ok() && !identity.uid.is_root() {
        return Err("still able to become root after setuid".to_string());
    }
    Ok(())
}

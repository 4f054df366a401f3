//! History of a folder: the commits that changed it (git's default history
//! simplification: a commit is shown when its folder differs from every
//! parent's), and how far one revision is from HEAD for that folder.

use anyhow::{Context as _, Result};
use git2::{Commit, Oid, Sort};
use serde::Serialize;

use super::{Repo, entry_in};

/// One commit, as `log` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitInfo {
    pub commit: String,
    pub author: String,
    pub email: String,
    /// Seconds since the epoch.
    #[serde(skip)]
    pub time: i64,
    /// The author's UTC offset, in minutes.
    #[serde(skip)]
    pub offset_minutes: i32,
    /// RFC 3339, in the author's offset.
    pub date: String,
    pub subject: String,
    pub message: String,
    /// `(key, value)` of the message's trailers, in order.
    #[serde(skip)]
    pub trailers: Vec<(String, String)>,
    /// The `Gitops-Namespace` trailers.
    pub namespaces: Vec<String>,
    /// The `Gitops-Object` trailers.
    pub objects: Vec<String>,
}

impl CommitInfo {
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(12)]
    }

    fn of(commit: &Commit<'_>) -> Self {
        let author = commit.author();
        let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
        let trailers: Vec<(String, String)> = git2::message_trailers_strs(&message)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let pick = |key: &str| {
            trailers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
                .collect()
        };
        let time = author.when();
        CommitInfo {
            commit: commit.id().to_string(),
            author: author.name().unwrap_or_default().to_string(),
            email: author.email().unwrap_or_default().to_string(),
            time: time.seconds(),
            offset_minutes: time.offset_minutes(),
            date: rfc3339(time.seconds(), time.offset_minutes()),
            subject: commit
                .summary_bytes()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default(),
            namespaces: pick("Gitops-Namespace"),
            objects: pick("Gitops-Object"),
            message,
            trailers,
        }
    }
}

/// Where an applied revision stands against HEAD, for one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// No commit touching the folder on either side.
    InSync,
    /// HEAD has this many commits touching the folder that the revision lacks.
    Behind(usize),
    /// The revision has commits touching the folder that HEAD lacks (the
    /// local clone is older than what the agent applied).
    Ahead(usize),
    Diverged {
        behind: usize,
        ahead: usize,
    },
    /// The revision is not a commit of this repository (not fetched yet?).
    Unknown,
}

impl Repo {
    /// Whether `commit` changed the folder `prefix`.
    fn touches(&self, commit: &Commit<'_>, prefix: &str) -> Result<bool> {
        let mine = entry_in(&commit.tree()?, prefix)?;
        if commit.parent_count() == 0 {
            return Ok(mine.is_some());
        }
        for parent in commit.parents() {
            if entry_in(&parent.tree()?, prefix)? == mine {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commits reachable from `from` and not from `hide` that changed `prefix`, newest first.
    fn walk(
        &self,
        from: Oid,
        hide: Option<Oid>,
        prefix: &str,
        limit: Option<usize>,
    ) -> Result<Vec<CommitInfo>> {
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)?;
        walk.push(from)?;
        if let Some(h) = hide {
            walk.hide(h)?;
        }
        let mut out = Vec::new();
        for id in walk {
            let commit = self.repo.find_commit(id?)?;
            if self.touches(&commit, prefix)? {
                out.push(CommitInfo::of(&commit));
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The history of `prefix` from HEAD (or `rev`), newest first.
    pub fn history(
        &self,
        prefix: &str,
        rev: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<CommitInfo>> {
        let from = match rev {
            Some(rev) => self.resolve(rev)?.0,
            None => match self.head_id()? {
                Some(id) => id,
                None => return Ok(Vec::new()),
            },
        };
        self.walk(from, None, prefix, limit)
    }

    /// One commit's details.
    pub fn commit_info(&self, id: Oid) -> Result<CommitInfo> {
        Ok(CommitInfo::of(&self.repo.find_commit(id)?))
    }

    /// How `revision` (a commit hash) relates to HEAD for the folder `prefix`.
    pub fn relation(&self, revision: &str, prefix: &str) -> Result<Relation> {
        let Some(head) = self.head_id()? else {
            return Ok(Relation::Unknown);
        };
        let Ok(rev) = self
            .repo
            .revparse_single(revision)
            .and_then(|o| o.peel_to_commit())
        else {
            return Ok(Relation::Unknown);
        };
        let rev = rev.id();
        let behind = self
            .walk(head, Some(rev), prefix, None)
            .context("walking history")?
            .len();
        let ahead = self
            .walk(rev, Some(head), prefix, None)
            .context("walking history")?
            .len();
        Ok(match (behind, ahead) {
            (0, 0) => Relation::InSync,
            (b, 0) => Relation::Behind(b),
            (0, a) => Relation::Ahead(a),
            (behind, ahead) => Relation::Diverged { behind, ahead },
        })
    }
}

/// `2026-11-29T10:00:00+01:00` from seconds and an offset in minutes.
pub fn rfc3339(seconds: i64, offset_minutes: i32) -> String {
    let local = seconds + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    if offset_minutes == 0 {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    } else {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            off / 60,
            off % 60
        )
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000, 60), "2026-11-18T12:06:40+01:00");
        assert_eq!(rfc3339(951_782_400, -330), "2000-02-28T18:30:00-05:30");
    }
}

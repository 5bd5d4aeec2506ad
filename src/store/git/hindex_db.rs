//! The history index's side in the database: its state, a card's rows, appending a
//! catch-up's commits in one transaction, and a rebuild from git in one pass.

use super::*;

/// How far the index reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexState {
    /// Every commit reachable from this one is indexed.
    pub head: Oid,
    /// How many commits that is.
    pub commits: u64,
}

/// The index's state; `None` when it holds nothing. An error when the table is missing or
/// the row unreadable.
pub fn read_state(conn: &Connection) -> rusqlite::Result<Option<IndexState>> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT head, commits FROM history_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((head, commits)) = row else {
        return Ok(None);
    };
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("history_state: {what}").into(),
        )
    };
    Ok(Some(IndexState {
        head: Oid::from_str(&head).map_err(|_| bad("head is not a commit id"))?,
        commits: u64::try_from(commits).map_err(|_| bad("negative count"))?,
    }))
}

/// Card `id`'s rows, newest first.
pub(super) fn rows_for(conn: &Connection, id: &str) -> rusqlite::Result<Vec<CommitInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.oid, c.time, c.author, h.lines, h.paths
         FROM history_cards h JOIN history_commits c ON c.seq = h.seq
         WHERE h.job_id = ?1 ORDER BY h.seq DESC",
    )?;
    let rows = stmt.query_map([id], |r| {
        let json = |i: usize| -> rusqlite::Result<Vec<String>> {
            let text: String = r.get(i)?;
            serde_json::from_str(&text).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
        };
        let oid: String = r.get(0)?;
        Ok(commit_info(
            &oid,
            r.get(1)?,
            &r.get::<_, String>(2)?,
            json(3)?,
            json(4)?,
        ))
    })?;
    rows.collect()
}

/// Where an append starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Throw away what the index holds and start afresh.
    Reset,
    /// On top of this state (`None`: an empty index); refused if the stored one differs.
    After(Option<IndexState>),
}

/// Append `commits` (oldest first) and move the index's head to `head`, `walked` commits
/// further; in one transaction, and only when the stored state is still `base` (false
/// otherwise: another writer moved it, plan again).
pub fn append(
    conn: &mut Connection,
    base: Base,
    commits: &[IndexedCommit],
    head: Oid,
    walked: u64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let start = match base {
        Base::Reset => {
            tx.execute_batch(
                "DELETE FROM history_cards; DELETE FROM history_commits;
                 DELETE FROM history_state;",
            )?;
            0
        }
        Base::After(expected) => {
            if read_state(&tx).ok().flatten() != expected {
                return Ok(false);
            }
            expected.map_or(0, |s| s.commits)
        }
    };
    {
        let mut seq: i64 = tx.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM history_commits",
            [],
            |r| r.get(0),
        )?;
        let mut commit = tx.prepare_cached(
            "INSERT OR IGNORE INTO history_commits (seq, oid, time, author) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut card = tx.prepare_cached(
            "INSERT OR IGNORE INTO history_cards (job_id, seq, lines, paths) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for c in commits {
            seq += 1;
            if commit.execute(params![seq, c.oid.to_string(), c.time, c.author])? == 0 {
                seq -= 1;
                continue; // already indexed (with its cards)
            }
            for e in &c.cards {
                let lines = serde_json::to_string(&e.lines).unwrap_or_else(|_| "[]".into());
                let paths = serde_json::to_string(&e.paths).unwrap_or_else(|_| "[]".into());
                card.execute(params![e.job_id, seq, lines, paths])?;
            }
        }
    }
    let total = i64::try_from(start.saturating_add(walked)).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO history_state (id, head, commits, updated) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET head = ?1, commits = ?2, updated = ?3",
        params![
            head.to_string(),
            total,
            crate::store::db::ts_text(&Utc::now())
        ],
    )?;
    tx.commit()?;
    Ok(true)
}

/// Whether all three tables of the index are there.
pub(super) fn tables_present(conn: &Connection) -> rusqlite::Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
         AND name IN ('history_commits', 'history_cards', 'history_state')",
        [],
        |r| r.get(0),
    )?;
    Ok(n == 3)
}

/// Make the index's tables if they are missing (deleted by hand).
pub fn ensure_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TABLES)
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebuilt {
    /// Commits walked.
    pub commits: u64,
    /// Commits that touched a card.
    pub card_commits: u64,
    /// Distinct cards.
    pub cards: u64,
    /// The commit the index now reaches (`None` on an unborn branch).
    pub head: Option<String>,
    /// How long the pass took, and the write.
    pub pass_ms: u64,
    pub write_ms: u64,
}

/// `pas reindex`: one pass over git, and the index replaced by its result in one
/// transaction (the database is created and migrated when absent).
pub fn rebuild(store: &GitStore, db: &Path) -> anyhow::Result<Rebuilt> {
    let started = Instant::now();
    let pass = store.one_pass(None)?;
    let pass_ms = started.elapsed().as_millis() as u64;
    let mut conn = crate::store::db::open(db)?;
    let started = Instant::now();
    ensure_tables(&conn)?;
    match pass.head {
        Some(head) => {
            append(&mut conn, Base::Reset, &pass.commits, head, pass.walked)?;
        }
        None => {
            conn.execute_batch(
                "DELETE FROM history_cards; DELETE FROM history_commits; DELETE FROM history_state;",
            )?;
        }
    }
    let cards: BTreeSet<&str> = pass
        .commits
        .iter()
        .flat_map(|c| c.cards.iter().map(|e| e.job_id.as_str()))
        .collect();
    Ok(Rebuilt {
        commits: pass.walked,
        card_commits: pass.commits.len() as u64,
        cards: cards.len() as u64,
        head: pass.head.map(|h| h.to_string()),
        pass_ms,
        write_ms: started.elapsed().as_millis() as u64,
    })
}

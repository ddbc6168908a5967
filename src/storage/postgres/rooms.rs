//! The chat rooms' storage on PostgreSQL: the saved rooms (one row each, their state as
//! JSON) and their history (bounded by seq to the newest `keep`).

use super::*;

/// A room's history messages in one statement: the newest `$5` by seq are kept, counted
/// from the newest stored or written (a late write of older messages neither brings
/// back trimmed ones nor trims newer ones); nothing is stored for a room not saved.
const HISTORY_ADD: &str = "WITH m AS (
        SELECT s, a, x FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS t(s, a, x)),
    bound AS (
        SELECT GREATEST((SELECT MAX(seq) FROM room_history WHERE room = $1),
                        (SELECT MAX(s) FROM m)) - $5 AS b),
    ins AS (
        INSERT INTO room_history (room, seq, at, stanza)
        SELECT $1, s, a, x FROM m
        WHERE EXISTS (SELECT 1 FROM rooms WHERE jid = $1) AND s > (SELECT b FROM bound)
        ON CONFLICT (room, seq) DO UPDATE SET at = excluded.at, stanza = excluded.stanza)
    DELETE FROM room_history WHERE room = $1 AND seq <= (SELECT b FROM bound)";

impl Postgres {
    pub(super) fn stored_room_get(&self, jid: &str) -> Result<Option<String>, StorageError> {
        self.with(|c| {
            Ok(
                c.query_opt("SELECT data FROM rooms WHERE jid = $1", &[&jid])?
                    .map(|r| r.get(0)),
            )
        })
    }

    pub(super) fn stored_room_set(
        &self,
        service: &str,
        jid: &str,
        data: &str,
    ) -> Result<(), StorageError> {
        let (service, jid, data) = (service.to_owned(), jid.to_owned(), data.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO rooms (jid, service, data) VALUES ($1, $2, $3)
                 ON CONFLICT (jid) DO UPDATE SET service = excluded.service, data = excluded.data",
                &[&jid, &service, &data],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    pub(super) fn stored_room_delete(&self, jid: &str) -> Result<(), StorageError> {
        let jid = jid.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM room_history WHERE room = $1", &[&jid])
                .map_err(db_err)?;
            c.execute("DELETE FROM rooms WHERE jid = $1", &[&jid])
                .map(|_| ())
                .map_err(db_err)
        })
    }

    pub(super) fn stored_room_history(
        &self,
        jid: &str,
    ) -> Result<Vec<(u64, u64, String)>, StorageError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT seq, at, stanza FROM room_history WHERE room = $1 ORDER BY seq",
                &[&jid],
            )?
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u64,
                    r.get::<_, i64>(1) as u64,
                    r.get(2),
                )
            })
            .collect())
        })
    }

    pub(super) fn stored_room_history_add(
        &self,
        jid: &str,
        messages: Vec<(u64, u64, String)>,
        keep: usize,
    ) -> Result<(), StorageError> {
        if messages.is_empty() {
            return Ok(());
        }
        let jid = jid.to_owned();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let mut seqs = Vec::with_capacity(messages.len());
        let mut ats = Vec::with_capacity(messages.len());
        let mut xmls = Vec::with_capacity(messages.len());
        for (seq, at, xml) in messages {
            seqs.push(i64::try_from(seq).unwrap_or(i64::MAX));
            ats.push(i64::try_from(at).unwrap_or(i64::MAX));
            xmls.push(xml);
        }
        self.writer.write(move |w| {
            let (c, st) = w.prepared(HISTORY_ADD)?;
            c.execute(&st, &[&jid, &seqs, &ats, &xmls, &keep])
                .map(|_| ())
                .map_err(db_err)
        })
    }

    pub(super) fn stored_room_list(
        &self,
        service: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT jid, data FROM rooms WHERE service = $1 ORDER BY jid",
                &[&service],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }
}

//! The chat rooms' storage on SQLite: the saved rooms (one row each, their state as
//! JSON) and their history (bounded by seq to the newest `keep`).

use super::*;

impl Sqlite {
    pub(super) fn stored_room_get(&self, jid: &str) -> Result<Option<String>, StorageError> {
        self.with(|c| {
            c.query_row("SELECT data FROM rooms WHERE jid = ?1", params![jid], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)
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
                "INSERT INTO rooms (jid, service, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (jid) DO UPDATE SET service = excluded.service, data = excluded.data",
                params![jid, service, data],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    pub(super) fn stored_room_delete(&self, jid: &str) -> Result<(), StorageError> {
        let jid = jid.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM room_history WHERE room = ?1", params![jid])
                .map_err(db_err)?;
            c.execute("DELETE FROM rooms WHERE jid = ?1", params![jid])
                .map(|_| ())
                .map_err(db_err)
        })
    }

    pub(super) fn stored_room_history(
        &self,
        jid: &str,
    ) -> Result<Vec<(u64, u64, String)>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT seq, at, stanza FROM room_history WHERE room = ?1 ORDER BY seq",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![jid], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
                })
                .map_err(db_err)?;
            rows.map(|r| r.map(|(s, a, x)| (s as u64, a as u64, x)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)
        })
    }

    pub(super) fn stored_room_history_add(
        &self,
        jid: &str,
        messages: Vec<(u64, u64, String)>,
        keep: usize,
    ) -> Result<(), StorageError> {
        let Some(newest) = messages.iter().map(|m| m.0).max() else {
            return Ok(());
        };
        let jid = jid.to_owned();
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let newest = i64::try_from(newest).unwrap_or(i64::MAX);
        self.write(move |c| {
            // the newest `keep` by seq, counted from the newest stored or written: a late
            // write of older messages neither brings back trimmed ones nor trims newer
            let stored: Option<i64> = c
                .prepare_cached("SELECT MAX(seq) FROM room_history WHERE room = ?1")
                .and_then(|mut st| st.query_row(params![jid], |r| r.get(0)))
                .map_err(db_err)?;
            let bound = stored.unwrap_or(0).max(newest).saturating_sub(keep);
            let mut st = c
                .prepare_cached(
                    "INSERT INTO room_history (room, seq, at, stanza)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM rooms WHERE jid = ?1)
                     ON CONFLICT (room, seq) DO UPDATE SET at = excluded.at, stanza = excluded.stanza",
                )
                .map_err(db_err)?;
            for (seq, at, xml) in &messages {
                let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
                if seq > bound {
                    st.execute(params![jid, seq, i64::try_from(*at).unwrap_or(i64::MAX), xml])
                        .map_err(db_err)?;
                }
            }
            c.prepare_cached("DELETE FROM room_history WHERE room = ?1 AND seq <= ?2")
                .and_then(|mut st| st.execute(params![jid, bound]))
                .map(|_| ())
                .map_err(db_err)
        })
    }

    pub(super) fn stored_room_list(
        &self,
        service: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached("SELECT jid, data FROM rooms WHERE service = ?1 ORDER BY jid")
                .map_err(db_err)?;
            let rows = st
                .query_map(params![service], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }
}

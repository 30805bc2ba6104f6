//! The agent verbs: `put`, `patch`, `delete`, `resolve`, `set_policy`, `get`, `list`,
//! `subscribe`, `unsubscribe`, `send` and `conflicts`, each checked against the session's
//! rights and answered on the session (writes once they are durable).

use super::{Engine, Fatal, Gated};
use crate::auth::Rights;
use crate::doc::WriteOp;
use crate::frame::{Ack, DocView, Frame};
use crate::replica::CONFIG_COLLECTION;
use crate::{check_name, DocKey, Error, Result, SessionId};
use serde_json::{Map, Value};

impl Engine {
    /// One agent verb on an open session ([`Engine::handle_frame`] sends only those here).
    pub(super) fn on_agent_verb(
        &mut self,
        now_ms: u64,
        session: SessionId,
        f: Frame,
    ) -> Result<(), Fatal> {
        match f {
            Frame::Put {
                req,
                collection,
                id,
                value,
            } => {
                let op = WriteOp::Put(as_object(value)?);
                self.agent_write(now_ms, session, req, DocKey::new(collection, id), op)?;
            }
            Frame::Patch {
                req,
                collection,
                id,
                value,
            } => {
                let op = WriteOp::Patch(as_object(value)?);
                self.agent_write(now_ms, session, req, DocKey::new(collection, id), op)?;
            }
            Frame::Delete {
                req,
                collection,
                id,
            } => {
                let key = DocKey::new(collection, id);
                self.agent_write(now_ms, session, req, key, WriteOp::Delete)?;
            }
            Frame::Resolve {
                req,
                collection,
                id,
                value,
            } => {
                self.need(session, Rights::Write)?;
                let key = DocKey::new(collection, id);
                if self.replica.conflict(&key).is_none() {
                    return Err(Fatal(Error::NoConflict {
                        collection: key.collection,
                        id: key.id,
                    }));
                }
                let op = match value {
                    None | Some(Value::Null) => WriteOp::Delete,
                    Some(v) => WriteOp::Put(as_object(v)?),
                };
                self.agent_write(now_ms, session, req, key, op)?;
            }
            Frame::SetPolicy {
                req,
                collection,
                policy,
            } => {
                self.need(session, Rights::Admin)?;
                check_name("collection", &collection, false)?;
                let mut m = Map::new();
                m.insert("policy".into(), Value::from(policy.as_str()));
                let key = DocKey::new(CONFIG_COLLECTION, format!("collection:{collection}"));
                self.agent_write(now_ms, session, req, key, WriteOp::Patch(m))?;
            }
            Frame::Get {
                req,
                collection,
                id,
            } => {
                self.need(session, Rights::Read)?;
                let doc = self.replica.view(&DocKey::new(collection, id));
                self.send(session, Frame::Doc { req, doc });
            }
            Frame::List {
                req,
                collection,
                after,
                limit,
            } => {
                self.need(session, Rights::Read)?;
                let limit = crate::api::check_limit(limit.map_or(100, u64::from), 1000)?;
                let docs = self.replica.list(&collection, after.as_deref(), limit + 1);
                let (docs, next) = if docs.len() > limit {
                    let docs: Vec<DocView> = docs.into_iter().take(limit).collect();
                    let next = docs.last().map(|d| d.id.clone());
                    (docs, next)
                } else {
                    (docs, None)
                };
                self.send(session, Frame::Docs { req, docs, next });
            }
            Frame::Subscribe {
                req,
                channel,
                collection,
                from,
            } => {
                self.need(session, Rights::Read)?;
                let mut replay = Vec::new();
                if let Some(ch) = &channel {
                    check_name("channel", ch, false)?;
                    if let Some(cursor) = from {
                        replay = self.replica.logs().after(ch, cursor).cloned().collect();
                    }
                }
                if let Some(c) = &collection {
                    check_name("collection", c, true)?;
                }
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.channels.extend(channel);
                    s.collections.extend(collection);
                }
                self.send(
                    session,
                    Frame::Ack(Ack {
                        req,
                        ..Ack::default()
                    }),
                );
                for r in replay {
                    self.send(
                        session,
                        Frame::Broadcast {
                            message: r.message,
                            offset: Some(r.offset),
                        },
                    );
                }
            }
            Frame::Unsubscribe {
                req,
                channel,
                collection,
            } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    if let Some(c) = channel {
                        s.channels.remove(&c);
                    }
                    if let Some(c) = collection {
                        s.collections.remove(&c);
                    }
                }
                self.send(
                    session,
                    Frame::Ack(Ack {
                        req,
                        ..Ack::default()
                    }),
                );
            }
            Frame::Send {
                req,
                channel,
                payload,
            } => {
                self.need(session, Rights::Write)?;
                crate::limits::check_message(&channel, &payload)?;
                let id = self.replica.publish(now_ms, channel, payload);
                self.msg_from.insert(id, session);
                self.gate(Gated::Frame(
                    session,
                    Frame::Ack(Ack {
                        req,
                        ..Ack::default()
                    }),
                ));
            }
            Frame::Conflicts { req, collection } => {
                self.need(session, Rights::Read)?;
                let conflicts = self.replica.conflicts(collection.as_deref());
                self.send(session, Frame::ConflictList { req, conflicts });
            }
            other => {
                return Err(Fatal(Error::Protocol(format!(
                    "`{}` is not an agent verb",
                    other.type_name()
                ))));
            }
        }
        Ok(())
    }

    fn agent_write(
        &mut self,
        now_ms: u64,
        session: SessionId,
        req: Option<u64>,
        key: DocKey,
        op: WriteOp,
    ) -> Result<(), Fatal> {
        self.need(session, Rights::Write)?;
        let config = key.collection == CONFIG_COLLECTION;
        if config {
            self.need(session, Rights::Admin)?;
        }
        self.check_write(&key, &op)?;
        let dot = self.replica.write(now_ms, key, op)?;
        self.gate(Gated::Frame(
            session,
            Frame::Ack(Ack {
                req,
                dot: Some(dot),
                seq: None,
            }),
        ));
        Ok(())
    }
}

fn as_object(v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Err(Error::NotAnObject("null")),
        Value::Bool(_) => Err(Error::NotAnObject("a boolean")),
        Value::Number(_) => Err(Error::NotAnObject("a number")),
        Value::String(_) => Err(Error::NotAnObject("a string")),
        Value::Array(_) => Err(Error::NotAnObject("an array")),
    }
}

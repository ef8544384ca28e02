//! [`SessionStore`] for [`RedisStore`]: input checks, op budgets and the single-key operations.

use super::*;

impl SessionStore for RedisStore {
    fn touch_session<'a>(&'a self, touch: SessionTouch<'a>) -> StoreFuture<'a, Touch> {
        Box::pin(async move {
            validate_touch(&touch)?;
            within_budget(self.budget, self.touch_inner(&touch)).await
        })
    }

    fn session<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            self.load_session(sessionid).await
        })
    }

    fn start_conversation(&self, conversation: Conversation) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            validate_conversation(&conversation)?;
            within_budget(self.budget, self.start_conversation_inner(&conversation)).await
        })
    }

    fn answer_conversation<'a>(
        &'a self,
        conversationid: &'a str,
        at: UnixMillis,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_conversationid(conversationid)?;
            let mut connection = self.connection.clone();
            let op = async {
                self.answer
                    .key(self.keys.conversation(conversationid))
                    .arg(at)
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(backend)
            };
            match within_budget(self.budget, op).await? {
                0 => Err(StoreError::NotFound("conversation")),
                _ => Ok(()),
            }
        })
    }

    fn end_conversation<'a>(
        &'a self,
        conversationid: &'a str,
        at: UnixMillis,
        final_status: u16,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_conversationid(conversationid)?;
            let mut connection = self.connection.clone();
            let op = async {
                self.end
                    .key(self.keys.conversation(conversationid))
                    .arg(at)
                    .arg(final_status)
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(backend)
            };
            match within_budget(self.budget, op).await? {
                0 => Err(StoreError::NotFound("conversation")),
                _ => Ok(()),
            }
        })
    }

    fn conversation<'a>(
        &'a self,
        conversationid: &'a str,
    ) -> StoreFuture<'a, Option<Conversation>> {
        Box::pin(async move {
            validate_conversationid(conversationid)?;
            self.load_conversation(conversationid).await
        })
    }

    fn variable<'a>(
        &'a self,
        sessionid: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<Variable>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            validate_variable_name(name)?;
            for key in [
                self.keys.session_variables(sessionid),
                self.keys.user_variables(sessionid),
            ] {
                let bytes: Option<Vec<u8>> =
                    self.query(redis::cmd("HGET").arg(&key).arg(name)).await?;
                if let Some(bytes) = bytes {
                    return codec::decode_variable(&bytes).map(Some);
                }
            }
            Ok(None)
        })
    }

    fn variables<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Vec<Variable>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            self.variables_inner(sessionid).await
        })
    }

    fn put_variable<'a>(&'a self, sessionid: &'a str, variable: Variable) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            validate_variable(&variable)?;
            let session_key = self.keys.session_variables(sessionid);
            let user_key = self.keys.user_variables(sessionid);
            let (target, other, expire_at) = match variable.lifetime {
                Lifetime::Session => (
                    session_key,
                    user_key,
                    variable
                        .updated_at_ms
                        .saturating_add(self.retention_ms)
                        .to_string(),
                ),
                Lifetime::User => (user_key, session_key, String::new()),
            };
            let mut connection = self.connection.clone();
            let stored: i64 = self
                .put_variable
                .key(self.keys.session(sessionid))
                .key(target)
                .key(other)
                .arg(&variable.name)
                .arg(codec::encode_variable(&variable))
                .arg(expire_at)
                .invoke_async(&mut connection)
                .await
                .map_err(backend)?;
            match stored {
                0 => Err(StoreError::NotFound("session")),
                _ => Ok(()),
            }
        })
    }

    fn delete_variable<'a>(&'a self, sessionid: &'a str, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            validate_variable_name(name)?;
            let mut removed = 0;
            for key in [
                self.keys.session_variables(sessionid),
                self.keys.user_variables(sessionid),
            ] {
                let count: i64 = self.query(redis::cmd("HDEL").arg(&key).arg(name)).await?;
                removed += count;
            }
            Ok(removed > 0)
        })
    }

    fn erase_session<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            self.erase_inner(sessionid).await
        })
    }

    fn purge_tenant<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_tenant(tenant)?;
            self.purge_inner(tenant).await
        })
    }

    fn sweep(&self, _now: UnixMillis) -> StoreFuture<'_, Swept> {
        // Session variables and conversations carry a native expiry; see the module
        // documentation.
        Box::pin(async { Ok(Swept::default()) })
    }

    fn put_alias<'a>(&'a self, new_sessionid: &'a str, original: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_sessionid(new_sessionid)?;
            validate_sessionid(original)?;
            let op = async {
                // The reverse entry first, so erasing the original always finds the alias.
                let _: i64 = self
                    .query(
                        redis::cmd("SADD")
                            .arg(self.keys.aliased_by(original))
                            .arg(new_sessionid),
                    )
                    .await?;
                let previous: Option<String> = self
                    .query(
                        redis::cmd("SET")
                            .arg(self.keys.alias(new_sessionid))
                            .arg(original)
                            .arg("GET"),
                    )
                    .await?;
                if let Some(previous) = previous.filter(|p| p != original) {
                    let _: i64 = self
                        .query(
                            redis::cmd("SREM")
                                .arg(self.keys.aliased_by(&previous))
                                .arg(new_sessionid),
                        )
                        .await?;
                }
                Ok(())
            };
            within_budget(self.budget, op).await
        })
    }

    fn resolve_alias<'a>(&'a self, sessionid: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            validate_sessionid(sessionid)?;
            let mut get = redis::cmd("GET");
            get.arg(self.keys.alias(sessionid));
            within_budget(self.budget, self.query(&get)).await
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let reply: String = within_budget(self.budget, self.query(&redis::cmd("PING"))).await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(StoreError::Backend(format!(
                    "PING returned {reply:?} instead of PONG"
                )))
            }
        })
    }
}

//! Input checks shared by both backends and the admin API. Ids are restricted to characters
//! that are safe inside a Redis hash tag and a redb key separated by NUL bytes.

use super::{Conversation, StoreError, Variable};

/// Longest sessionid, conversationid, callid or tenant accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest variable name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest variable value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

fn check_id(field: &'static str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || !id.bytes().all(is_id_byte) {
        return Err(StoreError::Invalid {
            field,
            message: "must be 1 to 128 ASCII letters, digits, '-', '_' or '.'",
        });
    }
    Ok(())
}

pub fn validate_sessionid(sessionid: &str) -> Result<(), StoreError> {
    check_id("sessionid", sessionid)
}

pub fn validate_conversationid(conversationid: &str) -> Result<(), StoreError> {
    check_id("conversationid", conversationid)
}

/// Checks a tenant name: 1 to 128 bytes without control characters, braces or ':'.
pub fn validate_tenant(tenant: &str) -> Result<(), StoreError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_ID_BYTES
        && !tenant
            .chars()
            .any(|c| c.is_control() || matches!(c, '{' | '}' | ':'));
    if !ok {
        return Err(StoreError::Invalid {
            field: "tenant",
            message: "must be 1 to 128 bytes without control characters, '{', '}' or ':'",
        });
    }
    Ok(())
}

pub fn validate_variable_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(StoreError::Invalid {
            field: "variable name",
            message: "must be 1 to 128 ASCII letters, digits, '-', '_', '.' or ':'",
        });
    }
    Ok(())
}

pub fn validate_variable(variable: &Variable) -> Result<(), StoreError> {
    validate_variable_name(&variable.name)?;
    if variable.value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Invalid {
            field: "variable value",
            message: "must be at most 65536 bytes",
        });
    }
    Ok(())
}

pub fn validate_conversation(conversation: &Conversation) -> Result<(), StoreError> {
    validate_conversationid(&conversation.conversationid)?;
    validate_sessionid(&conversation.sessionid)?;
    validate_tenant(&conversation.tenant)?;
    check_id("callid", &conversation.callid)?;
    let short = |s: &str| s.len() <= MAX_ID_BYTES && !s.chars().any(char::is_control);
    if !short(&conversation.release) {
        return Err(StoreError::Invalid {
            field: "release",
            message: "must be at most 128 bytes without control characters",
        });
    }
    if !short(&conversation.identity_source) {
        return Err(StoreError::Invalid {
            field: "identity_source",
            message: "must be at most 128 bytes without control characters",
        });
    }
    Ok(())
}

pub fn validate_touch(touch: &super::SessionTouch<'_>) -> Result<(), StoreError> {
    validate_sessionid(touch.sessionid)?;
    validate_tenant(touch.tenant)?;
    if touch.instance.is_empty()
        || touch.instance.len() > MAX_ID_BYTES
        || touch.instance.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid {
            field: "instance",
            message: "must be 1 to 128 bytes without control characters",
        });
    }
    check_id("key_id", touch.key_id)
}

//! Lua scripts for operations that must be atomic. Every key of one script carries the same
//! hash tag, so each script runs on one cluster node.

/// KEYS: session hash, session-variable hash.
/// ARGV: tenant, instance, key id, now (ms), other calls active ("1" or "0"), expiry (ms).
/// Returns `{returning (0 or 1), session hash as a flat field/value list}`.
pub const TOUCH: &str = r#"
local returning = redis.call('EXISTS', KEYS[1])
if returning == 1 then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_seen') or '0')
  if tonumber(ARGV[4]) > last then
    redis.call('HSET', KEYS[1], 'last_seen', ARGV[4])
  end
  redis.call('HINCRBY', KEYS[1], 'calls', 1)
else
  redis.call('HSET', KEYS[1], 'v', '1', 'tenant', ARGV[1], 'instance', ARGV[2],
    'key_id', ARGV[3], 'first_seen', ARGV[4], 'last_seen', ARGV[4], 'calls', '1')
end
if ARGV[5] == '0' then
  redis.call('DEL', KEYS[2])
else
  redis.call('PEXPIREAT', KEYS[2], ARGV[6])
end
return {returning, redis.call('HGETALL', KEYS[1])}
"#;

/// KEYS: session hash, hash of the variable's lifetime, hash of the other lifetime.
/// ARGV: name, encoded variable, expiry in ms for session variables or "" for user variables.
/// Returns 0 when the session does not exist, else 1.
pub const PUT_VARIABLE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('PEXPIREAT', KEYS[2], ARGV[3])
end
return 1
"#;

/// KEYS: conversation hash. ARGV: answer time (ms).
/// Returns 0 when the conversation does not exist, else 1. A second answer keeps the first time.
pub const ANSWER: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSETNX', KEYS[1], 'answered_at', ARGV[1])
return 1
"#;

/// KEYS: conversation hash. ARGV: end time (ms), final status.
/// Returns 0 when the conversation does not exist, else 1. A second end keeps the first values.
pub const END: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'ended_at') == 0 then
  redis.call('HSET', KEYS[1], 'ended_at', ARGV[1], 'final_status', ARGV[2])
end
return 1
"#;

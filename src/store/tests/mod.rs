mod codec;
mod config;
mod embedded;
mod redis;
mod redis_server;
pub(crate) mod suite;

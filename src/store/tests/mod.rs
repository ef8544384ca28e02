mod codec;
mod config;
mod embedded;
mod measure;
mod redis;
mod redis_server;
pub(crate) mod suite;

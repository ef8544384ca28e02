//! The key ring: the sessionid keys of every configured release, derived once at start-up from
//! the tenant keys, plus keys derived from retired tenant keys for lookups during a rotation.

use std::collections::HashMap;

use zeroize::Zeroizing;

use super::keyfile::{configured_key, load_key, load_or_create_key, KeyLoadError};
use super::ReleaseKey;
use crate::config::{Config, TenantConfig};

/// The key material of one tenant: the current key and retired keys with their key ids.
pub struct TenantKeys {
    pub current: Zeroizing<Vec<u8>>,
    pub previous: Vec<(String, Zeroizing<Vec<u8>>)>,
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("TenantKeys")
            .field("current", &"<redacted>")
            .field("previous_key_ids", &previous)
            .finish()
    }
}

/// One release: its instance id and the sessionid keys derived for it.
#[derive(Debug, Clone)]
pub struct Release {
    instance_id: String,
    tenant: String,
    key: ReleaseKey,
    /// Keys derived from the tenant's retired keys, in configuration order.
    previous: Vec<ReleaseKey>,
}

impl Release {
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Returns the key that computes new sessionids.
    pub fn key(&self) -> &ReleaseKey {
        &self.key
    }

    /// Computes the sessionid of a canonical callerid under the current key.
    pub fn sessionid(&self, callerid: &str) -> String {
        self.key.sessionid(callerid)
    }

    /// Returns true when the tenant has retired keys, so a caller may have a session under an
    /// older sessionid.
    pub fn has_previous_keys(&self) -> bool {
        !self.previous.is_empty()
    }

    /// Computes the sessionids of a canonical callerid under every retired key, in
    /// configuration order. Empty when the tenant has no retired keys.
    pub fn previous_sessionids(&self, callerid: &str) -> Vec<String> {
        self.previous
            .iter()
            .map(|key| key.sessionid(callerid))
            .collect()
    }

    /// Computes the sessionid of a canonical callerid under the current key and every retired
    /// key, current first, so lookups and erasure also find data stored before a rotation.
    pub fn sessionids_all_keys(&self, callerid: &str) -> Vec<String> {
        std::iter::once(&self.key)
            .chain(&self.previous)
            .map(|key| key.sessionid(callerid))
            .collect()
    }
}

/// Computes the sessionids of `callerid` under every key of `release`, current key first.
pub fn sessionids_all_keys(release: &Release, callerid: &str) -> Vec<String> {
    release.sessionids_all_keys(callerid)
}

/// The sessionid keys of all configured releases.
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// Releases in configuration order; the first is the default.
    releases: Vec<Release>,
    /// Request-URI users that select a release, mapped to its index.
    selectors: HashMap<Box<[u8]>, usize>,
}

impl KeyRing {
    /// Builds the ring from tenant keys already loaded, keyed by tenant name.
    pub fn from_tenant_keys(
        config: &Config,
        keys: &HashMap<String, TenantKeys>,
    ) -> Result<Self, KeyLoadError> {
        let mut releases = Vec::with_capacity(config.releases.len());
        let mut selectors = HashMap::new();
        for (index, release) in config.releases.iter().enumerate() {
            let unknown = || KeyLoadError::UnknownTenant {
                tenant: release.tenant.clone(),
            };
            let tenant = config
                .tenants
                .iter()
                .find(|t| t.name == release.tenant)
                .ok_or_else(unknown)?;
            let tenant_keys = keys.get(&tenant.name).ok_or_else(unknown)?;
            let derive = |key: &[u8], key_id: &str| {
                ReleaseKey::derive(key, key_id, &release.instance_id).map_err(|source| {
                    KeyLoadError::Derive {
                        tenant: tenant.name.clone(),
                        source,
                    }
                })
            };

            let key = derive(&tenant_keys.current, &tenant.key_id)?;
            let previous = tenant_keys
                .previous
                .iter()
                .map(|(key_id, key)| derive(key, key_id))
                .collect::<Result<Vec<_>, _>>()?;
            releases.push(Release {
                instance_id: release.instance_id.clone(),
                tenant: tenant.name.clone(),
                key,
                previous,
            });
            for user in &release.request_uri_users {
                selectors.entry(user.as_bytes().into()).or_insert(index);
            }
        }
        if releases.is_empty() {
            return Err(KeyLoadError::NoRelease);
        }
        Ok(Self {
            releases,
            selectors,
        })
    }

    /// Loads the keys of one release only, creating no file. Returns `None` when no release has
    /// this instance id. A missing key of another tenant does not matter here.
    pub fn load_release(
        config: &Config,
        instance_id: &str,
    ) -> Result<Option<Release>, KeyLoadError> {
        let Some(release) = config
            .releases
            .iter()
            .find(|r| r.instance_id == instance_id)
        else {
            return Ok(None);
        };
        let tenant = config
            .tenants
            .iter()
            .find(|t| t.name == release.tenant)
            .ok_or_else(|| KeyLoadError::UnknownTenant {
                tenant: release.tenant.clone(),
            })?;
        let current = load_key(tenant, &config.data_dir)?;
        let keys = HashMap::from([(tenant.name.clone(), tenant_keys(tenant, current)?)]);

        let single = Config {
            releases: vec![release.clone()],
            ..config.clone()
        };
        let mut ring = Self::from_tenant_keys(&single, &keys)?;
        Ok(ring.releases.pop())
    }

    /// Loads every tenant's keys from key_file, key_env or the generated key file, creating no
    /// file.
    pub fn load(config: &Config) -> Result<Self, KeyLoadError> {
        let mut keys = HashMap::new();
        for tenant in &config.tenants {
            let current = load_key(tenant, &config.data_dir)?;
            keys.insert(tenant.name.clone(), tenant_keys(tenant, current)?);
        }
        Self::from_tenant_keys(config, &keys)
    }

    /// Loads every tenant's keys, creating the generated key file of each tenant that has
    /// neither a key nor a generated file yet. Returns the ring and the names of the tenants
    /// whose key was created now.
    pub fn load_or_create(config: &Config) -> Result<(Self, Vec<String>), KeyLoadError> {
        let mut keys = HashMap::new();
        let mut created = Vec::new();
        for tenant in &config.tenants {
            let (current, is_new) = load_or_create_key(tenant, &config.data_dir)?;
            if is_new {
                created.push(tenant.name.clone());
            }
            keys.insert(tenant.name.clone(), tenant_keys(tenant, current)?);
        }
        Ok((Self::from_tenant_keys(config, &keys)?, created))
    }

    /// Returns the current key of the release with this instance id.
    pub fn release(&self, instance_id: &str) -> Option<&ReleaseKey> {
        self.release_by_id(instance_id).map(Release::key)
    }

    /// Returns the release with this instance id.
    pub fn release_by_id(&self, instance_id: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.instance_id == instance_id)
    }

    /// Selects the release for a request by its Request-URI user: the release that lists the
    /// user exactly, or the user without its parameters (from the first `;`), else the first
    /// release.
    pub fn select(&self, request_uri_user: Option<&[u8]>) -> &Release {
        let index = request_uri_user.and_then(|user| {
            let without_params = user.split(|b| *b == b';').next().unwrap_or(user);
            self.selectors
                .get(user)
                .or_else(|| self.selectors.get(without_params))
        });
        &self.releases[index.copied().unwrap_or(0)]
    }

    pub fn releases(&self) -> &[Release] {
        &self.releases
    }
}

fn tenant_keys(
    tenant: &TenantConfig,
    current: Zeroizing<Vec<u8>>,
) -> Result<TenantKeys, KeyLoadError> {
    let mut previous = Vec::with_capacity(tenant.previous_keys.len());
    for retired in &tenant.previous_keys {
        let key = configured_key(
            &tenant.name,
            retired.key_file.as_deref(),
            retired.key_env.as_deref(),
        )?
        .ok_or_else(|| KeyLoadError::Missing {
            tenant: tenant.name.clone(),
            path: retired.key_file.clone().unwrap_or_default(),
        })?;
        previous.push((retired.key_id.clone(), key));
    }
    Ok(TenantKeys { current, previous })
}

//! The session API over real loopback HTTP, backed by the embedded store.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::pseudonym::{random_id, IdKind, ReleaseKey};
use crate::store::{Conversation, EmbeddedStore, SessionTouch, StoreConfig};

const CALLER: &str = "+4930123456";
const INSTANCE: &str = "prod";

/// A running API server on 127.0.0.1 and what the tests need to call it.
struct Api {
    address: std::net::SocketAddr,
    token: String,
    store: Arc<dyn SessionStore>,
    old_key: ReleaseKey,
    new_key: ReleaseKey,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Api {
    start_with(None).await
}

/// Starts the API with `lookup`, or with a lookup over `old_key` and `new_key` that accepts
/// only `+<digits>` callerids when it is `None`.
async fn start_with(lookup: Option<Arc<dyn SessionLookup>>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        op_budget_ms: 5_000,
        ..StoreConfig::default()
    };
    let store: Arc<dyn SessionStore> =
        Arc::new(EmbeddedStore::open(dir.path(), &config).await.unwrap());
    let (token, path) = load_or_create_admin_token(dir.path()).unwrap();
    let token_text = std::fs::read_to_string(&path).unwrap().trim().to_owned();

    let tenant_key = [7u8; 32];
    let old_key = ReleaseKey::derive(&tenant_key, "k1", INSTANCE).unwrap();
    let new_key = ReleaseKey::derive(&tenant_key, "k2", INSTANCE).unwrap();
    let keys = [new_key.clone(), old_key.clone()];
    let default_lookup = move |instance: &str, _trunk: Option<&str>, callerid: &str| {
        if instance != INSTANCE {
            return Err(LookupError::UnknownInstance);
        }
        if !callerid.starts_with('+') {
            return Err(LookupError::InvalidCallerid);
        }
        Ok(keys.iter().map(|key| key.sessionid(callerid)).collect())
    };
    let router = session_routes(AdminState {
        store: store.clone(),
        lookup: lookup.unwrap_or_else(|| Arc::new(default_lookup)),
        token,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Api {
        address,
        token: token_text,
        store,
        old_key,
        new_key,
        server,
        _dir: dir,
    }
}

impl Api {
    /// Sends one request with the valid token and returns the status and the body as JSON
    /// (`Value::Null` for an empty body).
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        self.raw(method, path, Some(&auth), body).await
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, _, text) = self.exchange(method, path, authorization, body).await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    /// Sends one HTTP/1.1 request and returns the status, the head and the body text.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        let mut stream = TcpStream::connect(self.address).await.unwrap();
        let body = body.unwrap_or("");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(authorization) = authorization {
            request.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();

        let mut response = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut response),
        );
        read.await.expect("response within 10 s").unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    async fn create_session(&self, sessionid: &str) {
        let touch = SessionTouch {
            sessionid,
            tenant: "acme",
            instance: INSTANCE,
            key_id: "k1",
            now: 1_000,
            other_calls_active: false,
        };
        self.store.touch_session(touch).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_token_rejected() {
    let api = start().await;
    let cases = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Basic {}", api.token)),
        Some(format!("Bearer {}x", api.token)),
    ];
    for authorization in cases {
        let (status, head, _) = api
            .exchange("GET", "/v1/sessions/k1_x", authorization.as_deref(), None)
            .await;
        assert_eq!(status, 401, "{authorization:?}");
        assert!(head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_put_get_delete() {
    let api = start().await;
    let sid = api.old_key.sessionid(CALLER);
    api.create_session(&sid).await;
    let base = format!("/v1/sessions/{sid}/variables/topic");

    let body = r#"{"value": "billing", "lifetime": "user"}"#;
    let (status, put) = api.call("PUT", &base, Some(body)).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["value"], "billing");
    assert_eq!(put["lifetime"], "user");

    let (status, got) = api.call("GET", &base, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["value"], "billing");

    let (status, session) = api.call("GET", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(session["session"]["call_count"], 1);
    assert_eq!(session["variables"][0]["name"], "topic");

    let (status, _) = api.call("DELETE", &base, None).await;
    assert_eq!(status, 204);
    let (status, error) = api.call("DELETE", &base, None).await;
    assert_eq!(status, 404);
    assert_eq!(error["error"], "variable not found");
    let (status, _) = api.call("GET", &base, None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_returns_400_or_404() {
    let api = start().await;
    let sid = api.old_key.sessionid(CALLER);
    api.create_session(&sid).await;
    let good = r#"{"value": "x", "lifetime": "session"}"#;
    let cases = [
        ("GET", "/v1/sessions/k1_unknown".to_owned(), None, 404),
        (
            "PUT",
            "/v1/sessions/k1_unknown/variables/a".to_owned(),
            Some(good),
            404,
        ),
        (
            "PUT",
            format!("/v1/sessions/{sid}/variables/a"),
            Some("{"),
            400,
        ),
        (
            "PUT",
            format!("/v1/sessions/{sid}/variables/a"),
            Some(r#"{"value": "x", "lifetime": "forever"}"#),
            400,
        ),
        (
            "PUT",
            format!("/v1/sessions/{sid}/variables/a%20b"),
            Some(good),
            400,
        ),
        ("GET", "/v1/sessions/k1%7Bx%7D".to_owned(), None, 400),
        ("GET", "/v1/conversations/cv_unknown".to_owned(), None, 404),
        ("DELETE", "/v1/sessions/k1_unknown".to_owned(), None, 404),
        ("DELETE", "/v1/tenants/a%7Bb".to_owned(), None, 400),
    ];
    for (method, path, body, expected) in cases {
        let (status, error) = api.call(method, &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {error}");
        assert!(error["error"].is_string(), "{method} {path}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_read() {
    let api = start().await;
    let conversation = Conversation {
        conversationid: random_id(IdKind::Conversation),
        sessionid: api.old_key.sessionid(CALLER),
        tenant: "acme".into(),
        callid: random_id(IdKind::Call),
        release: INSTANCE.into(),
        started_at_ms: 5,
        answered_at_ms: Some(6),
        ended_at_ms: None,
        final_status: None,
        anonymous: false,
        identity_source: "pai".into(),
    };
    api.store
        .start_conversation(conversation.clone())
        .await
        .unwrap();
    let path = format!("/v1/conversations/{}", conversation.conversationid);
    let (status, got) = api.call("GET", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["callid"], json!(conversation.callid));
    assert_eq!(got["answered_at_ms"], 6);
    assert_eq!(got["ended_at_ms"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_lists_every_live_key() {
    let api = start().await;
    let old = api.old_key.sessionid(CALLER);
    let new = api.new_key.sessionid(CALLER);
    api.create_session(&old).await;
    api.store.put_alias(&new, &old).await.unwrap();

    let body = json!({"instance": INSTANCE, "callerid": CALLER}).to_string();
    let (status, found) = api.call("POST", "/v1/sessions/lookup", Some(&body)).await;
    assert_eq!(status, 200, "{found}");
    let sessions = found["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["sessionid"], json!(new));
    assert_eq!(sessions[0]["exists"], false);
    assert_eq!(sessions[0]["alias_of"], json!(old));
    assert_eq!(sessions[1]["sessionid"], json!(old));
    assert_eq!(sessions[1]["exists"], true);

    let unknown = json!({"instance": "other", "callerid": CALLER}).to_string();
    let (status, _) = api
        .call("POST", "/v1/sessions/lookup", Some(&unknown))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_errors_hide_callerid() {
    let api = start().await;
    let bodies = [
        json!({"instance": INSTANCE, "callerid": 4930123456u64}).to_string(),
        json!({"instance": INSTANCE, "callerid": "4930123456"}).to_string(),
        json!({"instance": INSTANCE, "callerid": "+4930123456", "extra": "+4930123456"})
            .to_string(),
    ];
    for body in bodies {
        let (status, _, text) = api
            .exchange(
                "POST",
                "/v1/sessions/lookup",
                Some(&format!("Bearer {}", api.token)),
                Some(&body),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(!text.contains("4930123456"), "callerid echoed: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_and_purge() {
    let api = start().await;
    let erased = api.old_key.sessionid(CALLER);
    let purged = api.old_key.sessionid("+4930999999");
    api.create_session(&erased).await;
    api.create_session(&purged).await;

    let path = format!("/v1/sessions/{erased}");
    let (status, _) = api.call("DELETE", &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = api.call("GET", &path, None).await;
    assert_eq!(status, 404);

    let (status, result) = api.call("DELETE", "/v1/tenants/acme", None).await;
    assert_eq!(status, 200);
    assert_eq!(result["erased_sessions"], 1);
    let (status, _) = api
        .call("GET", &format!("/v1/sessions/{purged}"), None)
        .await;
    assert_eq!(status, 404);
}

#[test]
fn token_file_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, path) = load_or_create_admin_token(dir.path()).unwrap();
    assert_eq!(path, dir.path().join(TOKEN_FILE_NAME));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let text = std::fs::read_to_string(&path).unwrap();
    let (second, _) = load_or_create_admin_token(dir.path()).unwrap();
    assert!(first.matches(text.trim()));
    assert!(second.matches(text.trim()));
    assert!(!second.matches("not the token"));
    assert!(!format!("{second:?}").contains(text.trim()));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = load_or_create_admin_token(dir.path()).unwrap_err();
    assert!(matches!(error, TokenError::Permissions { .. }), "{error}");
}

#[tokio::test]
async fn bind_error_names_address() {
    let occupied = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = occupied.local_addr().unwrap();
    let error = bind(addr).await.unwrap_err();
    assert_eq!(error.addr, addr);
    assert_eq!(error.source.kind(), std::io::ErrorKind::AddrInUse);
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot bind admin listener on {addr}: ")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_returns_json_404() {
    let api = start().await;
    for path in ["/v1/nothing", "/v2/sessions/k1_x", "/"] {
        let (status, error) = api.call("GET", path, None).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(error["error"], "no admin API route has this path", "{path}");
    }
    let (status, head, _) = api.exchange("GET", "/v1/nothing", None, None).await;
    assert_eq!(status, 401, "an unknown path needs the token too: {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_returns_json_405() {
    let api = start().await;
    let (status, error) = api.call("POST", "/v1/sessions/k1_x", Some("{}")).await;
    assert_eq!(status, 405);
    assert_eq!(
        error["error"],
        "this route does not serve the request's method"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_returns_json_413() {
    let api = start().await;
    let sid = api.old_key.sessionid(CALLER);
    api.create_session(&sid).await;
    let body = "x".repeat(MAX_BODY_BYTES + 1);
    let paths = [
        ("PUT", format!("/v1/sessions/{sid}/variables/big")),
        ("POST", "/v1/sessions/lookup".to_owned()),
    ];
    for (method, path) in paths {
        let (status, error) = api.call(method, &path, Some(&body)).await;
        assert_eq!(status, 413, "{method} {path}");
        assert_eq!(
            error["error"],
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            "{method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractor_rejection_returns_json() {
    let api = start().await;
    // A path segment that is not UTF-8 fails the path extractor, whose rejection is plain text.
    let (status, head, text) = api
        .exchange(
            "GET",
            "/v1/sessions/k1_%FF",
            Some(&format!("Bearer {}", api.token)),
            None,
        )
        .await;
    assert_eq!(status, 400, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(error["error"], "bad request");
}

/// Builds the lookup of a running proxy whose configuration has trunk `de`, which reads
/// national numbers with the German numbering plan.
fn core_lookup() -> (CoreLookup, Arc<crate::proxy::Core>) {
    use crate::config::Config;
    use crate::pseudonym::{KeyRing, TenantKeys};

    let text = format!(
        "[[tenants]]\nname = \"acme\"\nkey_id = \"k1\"\n\n\
         [[releases]]\ninstance_id = \"{INSTANCE}\"\ntenant = \"acme\"\n\n\
         [[trunks]]\nid = \"de\"\nregion = \"DE\"\n"
    );
    let config = Config::parse(&text, "test").unwrap();
    let tenant = TenantKeys {
        current: zeroize::Zeroizing::new(vec![7u8; 32]),
        previous: Vec::new(),
    };
    let tenants = std::collections::HashMap::from([("acme".to_owned(), tenant)]);
    let keys = KeyRing::from_tenant_keys(&config, &tenants).unwrap();
    let core = Arc::new(crate::proxy::Core::new(
        &config,
        keys,
        crate::identity::TrustMap::from_config(&config),
    ));
    (CoreLookup::new(Arc::clone(&core)), core)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_trunk_selects_numbering_plan() {
    let (lookup, core) = core_lookup();
    let api = start_with(Some(Arc::new(lookup))).await;
    let e164 = core
        .keys()
        .release_by_id(INSTANCE)
        .unwrap()
        .sessionid(CALLER);
    api.create_session(&e164).await;

    // The national form of CALLER, read with trunk de's plan, is the same caller.
    let national = json!({"instance": INSTANCE, "trunk": "de", "callerid": "030 123456"});
    let (status, found) = api
        .call("POST", "/v1/sessions/lookup", Some(&national.to_string()))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["sessions"][0]["sessionid"], json!(e164));
    assert_eq!(found["sessions"][0]["exists"], true);

    // Without a trunk the national number is a local:...@untrusted caller, another sessionid.
    let untrusted = json!({"instance": INSTANCE, "callerid": "030 123456"});
    let (status, found) = api
        .call("POST", "/v1/sessions/lookup", Some(&untrusted.to_string()))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_ne!(found["sessions"][0]["sessionid"], json!(e164));
    assert_eq!(found["sessions"][0]["exists"], false);

    // An E.164 number needs no trunk, and a trunk does not change it.
    for body in [
        json!({"instance": INSTANCE, "callerid": CALLER}),
        json!({"instance": INSTANCE, "trunk": "de", "callerid": CALLER}),
    ] {
        let (status, found) = api
            .call("POST", "/v1/sessions/lookup", Some(&body.to_string()))
            .await;
        assert_eq!(status, 200, "{body}: {found}");
        assert_eq!(found["sessions"][0]["sessionid"], json!(e164), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_unknown_trunk_returns_404() {
    let (lookup, _core) = core_lookup();
    let api = start_with(Some(Arc::new(lookup))).await;
    let body = json!({"instance": INSTANCE, "trunk": "nope", "callerid": "030 123456"});
    let (status, _, text) = api
        .exchange(
            "POST",
            "/v1/sessions/lookup",
            Some(&format!("Bearer {}", api.token)),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(text, r#"{"error":"trunk not found"}"#);
}

//! Handlers of the session API. Errors are JSON objects `{"error": "..."}`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminState, LookupError, MAX_BODY_BYTES};
use crate::store::{now_ms, Conversation, Lifetime, Session, StoreError, Variable};

/// An error response.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(what: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("{what} not found"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid { .. } => Self::bad_request(error.to_string()),
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Timeout(_) => {
                tracing::warn!(%error, "admin request: store timed out");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "store timed out; retry later".into(),
                }
            }
            StoreError::Backend(_) | StoreError::Corrupt(_) | StoreError::Closed => {
                tracing::error!(%error, "admin request: store failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "store failed; see the sipstamp log".into(),
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Returns the JSON 404 for a path that no route of the admin API serves.
pub async fn unknown_path() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no admin API route has this path".into(),
    }
}

/// Returns the JSON 405 for a route that exists but does not serve the request's method.
pub async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "this route does not serve the request's method".into(),
    }
}

/// Turns a failure to read the request body into a JSON error. A body over
/// [`MAX_BODY_BYTES`] gets 413, and the rejection's own text is not repeated.
fn read_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body is larger than {MAX_BODY_BYTES} bytes")
        } else {
            "cannot read the request body".to_owned()
        };
        ApiError { status, message }
    })
}

/// Rewrites an error response that is not JSON yet, such as an extractor's plain-text
/// rejection, into the documented `{"error": "..."}` shape, keeping its status. Responses
/// built from [`ApiError`] pass unchanged.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = status
        .canonical_reason()
        .unwrap_or("request failed")
        .to_ascii_lowercase();
    // The parts keep the status and headers such as Allow, and only the body is replaced.
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = json!({ "error": message }).to_string();
    Response::from_parts(parts, Body::from(body))
}

#[derive(Serialize)]
pub struct SessionView {
    session: Session,
    variables: Vec<Variable>,
}

pub async fn get_session(
    State(state): State<AdminState>,
    Path(sessionid): Path<String>,
) -> ApiResult<Json<SessionView>> {
    let session = state
        .store
        .session(&sessionid)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    let variables = state.store.variables(&sessionid).await?;
    Ok(Json(SessionView { session, variables }))
}

pub async fn erase_session(
    State(state): State<AdminState>,
    Path(sessionid): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.erase_session(&sessionid).await? {
        // The sessionid stays out of the log so that no copy of it outlives the erasure.
        tracing::info!("session erased through the admin API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("session"))
    }
}

pub async fn get_variable(
    State(state): State<AdminState>,
    Path((sessionid, name)): Path<(String, String)>,
) -> ApiResult<Json<Variable>> {
    state
        .store
        .variable(&sessionid, &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("variable"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariableBody {
    value: String,
    lifetime: Lifetime,
}

pub async fn put_variable(
    State(state): State<AdminState>,
    Path((sessionid, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Variable>> {
    let body = read_body(body)?;
    let body: VariableBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            "body must be JSON {\"value\": string, \"lifetime\": \"session\" or \"user\"}",
        )
    })?;
    let variable = Variable {
        name,
        value: body.value,
        lifetime: body.lifetime,
        updated_at_ms: now_ms(),
    };
    state
        .store
        .put_variable(&sessionid, variable.clone())
        .await?;
    Ok(Json(variable))
}

pub async fn delete_variable(
    State(state): State<AdminState>,
    Path((sessionid, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    if state.store.delete_variable(&sessionid, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("variable"))
    }
}

pub async fn get_conversation(
    State(state): State<AdminState>,
    Path(conversationid): Path<String>,
) -> ApiResult<Json<Conversation>> {
    state
        .store
        .conversation(&conversationid)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("conversation"))
}

pub async fn purge_tenant(
    State(state): State<AdminState>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let erased = state.store.purge_tenant(&tenant).await?;
    tracing::info!(tenant, erased, "tenant purged through the admin API");
    Ok(Json(json!({"erased_sessions": erased})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupBody {
    instance: String,
    /// Trunk whose numbering plan applies to a national number. Unset means no trunk.
    #[serde(default)]
    trunk: Option<String>,
    callerid: String,
}

#[derive(Serialize)]
struct LookupMatch {
    sessionid: String,
    /// Whether the store has a session under this sessionid.
    exists: bool,
    /// The original sessionid when this one is an alias from a key rotation.
    alias_of: Option<String>,
}

/// Computes the sessionids of a caller. The body is parsed here rather than by an extractor so
/// that no error message can echo the callerid.
pub async fn lookup(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let body = read_body(body)?;
    let body: LookupBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_request(
            "body must be JSON {\"instance\": string, \"callerid\": string, \"trunk\": optional string}",
        )
    })?;
    let found = state
        .lookup
        .sessionids(&body.instance, body.trunk.as_deref(), &body.callerid);
    let sessionids = match found {
        Ok(sessionids) => sessionids,
        Err(LookupError::UnknownInstance) => return Err(ApiError::not_found("instance")),
        Err(LookupError::UnknownTrunk) => return Err(ApiError::not_found("trunk")),
        Err(LookupError::InvalidCallerid) => {
            return Err(ApiError::bad_request(
                "callerid is not a valid phone number",
            ))
        }
    };
    let mut matches = Vec::with_capacity(sessionids.len());
    for sessionid in sessionids {
        let alias_of = state.store.resolve_alias(&sessionid).await?;
        let exists = state.store.session(&sessionid).await?.is_some();
        matches.push(LookupMatch {
            sessionid,
            exists,
            alias_of,
        });
    }
    Ok(Json(json!({"sessions": matches})))
}

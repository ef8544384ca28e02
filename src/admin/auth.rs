//! Bearer-token authentication for the admin routes.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::token::AdminToken;

/// Rejects a request with 401 unless it carries `Authorization: Bearer <token>`.
pub async fn require_token(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            // The scheme name is case-insensitive (RFC 9110 section 11.1).
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim_start())
        });
    match presented {
        Some(presented) if token.matches(presented.trim()) => next.run(request).await,
        _ => {
            let body = Json(serde_json::json!({"error": "missing or invalid bearer token"}));
            let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

//! JSON in and out for the control API: responses, errors that name the
//! field, and request bodies parsed with their field path.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::ConfigErrors;

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A plain-text response (probes).
pub fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

/// `{"error": ..., "errors": [{"path", "message"}]}` for an invalid config.
pub fn config_errors(status: StatusCode, errors: &ConfigErrors) -> Response<Full<Bytes>> {
    let list: Vec<_> = errors
        .0
        .iter()
        .map(|e| serde_json::json!({ "path": e.path, "message": e.message }))
        .collect();
    json(
        status,
        &serde_json::json!({ "error": "invalid config", "errors": list }),
    )
}

/// Parses a JSON body; the error names the field path and the position.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response<Full<Bytes>>> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            format!("malformed JSON: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        error(StatusCode::BAD_REQUEST, &message)
    })
}

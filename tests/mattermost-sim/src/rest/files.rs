//! `/files/...` routes: multipart and raw uploads, downloads, metadata.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Session, require_id};
use crate::app::Sim;
use crate::error::ApiError;
use crate::ids::{new_id, now_ms};
use crate::model::{FileInfo, FileUploadResponse};
use crate::state::{StoredFile, image_size, mime_for};

fn too_large(size: u64, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "api.file.upload_file.too_large_detailed.app_error",
        format!("Unable to upload file. {size} bytes exceeds the maximum allowed {max} bytes."),
    )
}

fn bad_form(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "api.file.upload_file.read_form_value.app_error",
        format!("Unable to read the upload form: {detail}."),
    )
}

/// `POST /files` → 201. Multipart (`channel_id` first, then file parts of any
/// name; a file before `channel_id` falls back to the legacy mode where file
/// parts must be named `files`) or a raw body with `?channel_id&filename`.
pub async fn upload(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<(StatusCode, Json<FileUploadResponse>), ApiError> {
    let cfg = sim.config();
    if !cfg.enable_file_attachments {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "api.file.attachments.disabled.app_error",
            "File attachments have been disabled on this server.",
        ));
    }
    let max = cfg.max_file_size;
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = content_length.filter(|l| *l > max) {
        return Err(too_large(len, max));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));

    let mut channel_id = String::new();
    let mut client_ids: Vec<String> = Vec::new();
    let mut parts: Vec<(String, Bytes)> = Vec::new();
    if is_multipart {
        let mut form = Multipart::from_request(req, &sim)
            .await
            .map_err(|e| bad_form(&e.body_text()))?;
        let mut legacy = false;
        while let Some(mut field) = form
            .next_field()
            .await
            .map_err(|e| bad_form(&e.body_text()))?
        {
            let name = field.name().unwrap_or("").to_owned();
            if let Some(file_name) = field.file_name().map(str::to_owned) {
                if channel_id.is_empty() {
                    legacy = true;
                }
                if legacy && name != "files" {
                    return Err(bad_form("file parts must be named files"));
                }
                let mut data: Vec<u8> = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| bad_form(&e.body_text()))? {
                    data.extend_from_slice(&chunk);
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    if len > max {
                        return Err(too_large(len, max));
                    }
                }
                parts.push((file_name, Bytes::from(data)));
                continue;
            }
            let value = field.text().await.map_err(|e| bad_form(&e.body_text()))?;
            match name.as_str() {
                "channel_id" => channel_id = value,
                "client_ids" => client_ids.push(value),
                other => return Err(bad_form(&format!("unexpected field {other}"))),
            }
        }
    } else {
        channel_id = q.get("channel_id").cloned().unwrap_or_default();
        let filename = q.get("filename").cloned().unwrap_or_default();
        if filename.is_empty() {
            return Err(ApiError::invalid_url("filename"));
        }
        if content_length == Some(0) {
            return Err(ApiError::invalid_body("Content-Length"));
        }
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let data = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large(max.saturating_add(1), max))?;
        if data.is_empty() {
            return Err(ApiError::invalid_body("Content-Length"));
        }
        if let Some(id) = q.get("client_id") {
            client_ids.push(id.clone());
        }
        parts.push((filename, data));
    }
    if !crate::ids::is_valid_id(&channel_id) {
        return Err(ApiError::invalid_body("channel_id"));
    }
    if !client_ids.is_empty() && client_ids.len() != parts.len() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.file.upload_file.incorrect_number_of_client_ids.app_error",
            "Unable to upload files. Have different number of client ids and files.",
        ));
    }
    if parts.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.file.upload_file.no_files.app_error",
            "No files were included in the upload.",
        ));
    }
    let mut store = sim.store.lock();
    if !store.is_member(&channel_id, &s.user_id) {
        return Err(ApiError::permissions());
    }
    let mut infos = Vec::new();
    for (name, data) in parts {
        let now = now_ms();
        let extension = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_lowercase())
            .unwrap_or_default();
        let mime = mime_for(&extension);
        let (width, height) = image_size(&data);
        let info = FileInfo {
            id: new_id(),
            user_id: s.user_id.clone(),
            post_id: String::new(),
            channel_id: channel_id.clone(),
            create_at: now,
            update_at: now,
            delete_at: 0,
            name,
            extension,
            size: i64::try_from(data.len()).unwrap_or(i64::MAX),
            mime_type: mime.to_owned(),
            width,
            height,
            has_preview_image: mime.starts_with("image/") && width > 0,
            mini_preview: None,
            remote_id: String::new(),
            archived: false,
        };
        store.files.insert(
            info.id.clone(),
            StoredFile {
                info: info.clone(),
                data,
            },
        );
        infos.push(info);
    }
    Ok((
        StatusCode::CREATED,
        Json(FileUploadResponse {
            file_infos: infos,
            client_ids,
        }),
    ))
}

/// A file the session may see: an uploader, or a reader of its channel.
fn visible(sim: &Sim, file_id: &str, user_id: &str) -> Result<StoredFile, ApiError> {
    let store = sim.store.lock();
    let file = store
        .files
        .get(file_id)
        .filter(|f| f.info.delete_at == 0)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(
                "app.file_info.get.app_error",
                "Unable to get the file info.",
            )
        })?;
    let readable = file.info.user_id == user_id
        || store
            .channels
            .get(&file.info.channel_id)
            .is_some_and(|c| store.can_read(c, user_id));
    if !readable {
        return Err(ApiError::permissions());
    }
    Ok(file)
}

/// `GET /files/{file_id}/info`.
pub async fn info(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(file_id): Path<String>,
) -> Result<Json<FileInfo>, ApiError> {
    require_id(&file_id, "file_id")?;
    Ok(Json(visible(&sim, &file_id, &s.user_id)?.info))
}

/// `GET /files/{file_id}`: the bytes, with the real download headers
/// (HTML and JS served as text/plain; inline only for media and PDF).
pub async fn download(
    State(sim): State<Arc<Sim>>,
    s: Session,
    Path(file_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    require_id(&file_id, "file_id")?;
    let file = visible(&sim, &file_id, &s.user_id)?;
    let mime = file.info.mime_type.as_str();
    let served = if mime.starts_with("text/html") || mime.starts_with("text/javascript") {
        "text/plain"
    } else if mime.is_empty() {
        "application/octet-stream"
    } else {
        mime
    };
    let inline = ["image/", "audio/", "video/", "application/pdf"]
        .iter()
        .any(|p| mime.starts_with(p))
        && q.get("download").is_none_or(|v| v != "1" && v != "true");
    let disposition = if inline {
        "inline".to_owned()
    } else {
        let quoted = file.info.name.replace('"', "\\\"");
        format!(
            "attachment;filename=\"{quoted}\"; filename*=UTF-8''{}",
            percent_encode(&file.info.name)
        )
    };
    let mut resp = (StatusCode::OK, file.data).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(served) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

/// RFC 5987 encoding for `filename*`.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

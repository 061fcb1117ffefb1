//! The server's icon, served by the daemon itself at `/icon.svg` and
//! `/icon.png` (no third-party URL: a host that shows it asks this server
//! and nobody else), and listed in `serverInfo.icons`. PNG because hosts
//! that render icons must support it; SVG for those that scale.

use crate::app::AppState;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use rmcp::model::Icon;

const SVG: &[u8] = include_bytes!("../../assets/icon.svg");
const PNG: &[u8] = include_bytes!("../../assets/icon.png");

/// `serverInfo.icons` for a daemon reached at `origin`.
pub fn icons(origin: &str) -> Vec<Icon> {
    let mut png = Icon::new(format!("{origin}/icon.png"));
    png.mime_type = Some("image/png".into());
    png.sizes = Some(vec!["64x64".into()]);
    let mut svg = Icon::new(format!("{origin}/icon.svg"));
    svg.mime_type = Some("image/svg+xml".into());
    svg.sizes = Some(vec!["any".into()]);
    vec![png, svg]
}

/// The two icon routes (public, like the OAuth metadata: an icon is shown
/// before anyone signs in).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/icon.svg", get(|| async { serve("image/svg+xml", SVG) }))
        .route("/icon.png", get(|| async { serve("image/png", PNG) }))
}

fn serve(mime: &'static str, bytes: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            // An SVG opened directly must not run anything.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
}

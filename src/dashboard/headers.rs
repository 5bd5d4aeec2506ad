//! The security headers on every dashboard response.
//!
//! The pages need only what pas serves itself: `app.js` (no inline script: the boot data
//! is a `type="application/json"` block, which is data, not script), `pas.css`, the
//! favicon, `fetch` to `/api/*` and the WebSocket to `/ws`. So the policy allows exactly
//! that origin, no inline script, no plugins, no framing and no `<base>` rewriting; a
//! card title that somehow got past escaping still could not run. The one allowance is
//! inline `style` attributes, which the script's gauges and bars set their widths with.

use axum::http::{header, HeaderName, HeaderValue};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

/// The Content-Security-Policy of the dashboard (DECISIONS.md, "Security").
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The headers, and the values every response gets.
fn headers() -> [(HeaderName, &'static str); 6] {
    [
        (header::CONTENT_SECURITY_POLICY, CSP),
        // A JSON body is never sniffed into HTML or script.
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // No clickjacking (for browsers that predate frame-ancestors).
        (header::X_FRAME_OPTIONS, "DENY"),
        // A `?token=` link never leaves in a Referer.
        (header::REFERRER_POLICY, "no-referrer"),
        // Other sites can neither embed the API's answers nor keep a handle on the window.
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ]
}

/// `app` with the security headers added to every response that lacks them.
pub(crate) fn apply<S: Clone + Send + Sync + 'static>(app: Router<S>) -> Router<S> {
    headers().into_iter().fold(app, |app, (name, value)| {
        app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

//! `max_concurrent_requests`: a request past the cap is answered 503 at once.
//!
//! Refused rather than queued (tower's `ConcurrencyLimit` would queue): a queue in front
//! of a gateway whose calls take a minute only grows, while a 503 with `Retry-After` is
//! what an OpenAI client library already retries with backoff. A request holds its slot
//! until its answer's body has been sent or dropped, so a stream counts until it ends; a
//! websocket's `101` frees its slot at once (its connection keeps its slot of
//! `max_connections`, see [`crate::web::listen::ConnSlot`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `app` answering at most `max` requests at once; `refuse(max)` answers the others.
pub fn capped(app: Router, max: usize, refuse: fn(usize) -> Response) -> Router {
    let slots = Arc::new(Semaphore::new(max));
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let slots = slots.clone();
        async move {
            let Ok(permit) = slots.try_acquire_owned() else {
                return refuse(max);
            };
            let resp = next.run(req).await;
            resp.map(|inner| {
                Body::new(Held {
                    inner,
                    _permit: permit,
                })
            })
        }
    }))
}

/// An answer's body holding its request's slot until it is sent or dropped.
struct Held {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    fn busy(max: usize) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, format!("busy: {max}")).into_response()
    }

    use axum::response::IntoResponse;

    /// A request past the cap is refused while the first one's body is unsent, and
    /// admitted once that body is dropped.
    #[tokio::test]
    async fn a_slot_is_held_until_the_body_is_gone() {
        let app = capped(Router::new().route("/", get(|| async { "hi" })), 1, busy);
        let req = || Request::builder().uri("/").body(Body::empty()).unwrap();
        let first = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let second = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        let third = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(third.status(), StatusCode::OK);
        assert_eq!(
            third.headers().get("content-length").unwrap(),
            "2",
            "the length survives the wrapper"
        );
    }
}

//! The admin listener: `/healthz` (the process is alive), `/readyz` (it
//! can do its job: not draining, tunnel connected, audit log writable) and
//! the pages each binary adds ([`Page`]: `/metrics`, the client's
//! `/connections`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tracing::warn;

use crate::lifecycle::Lifecycle;

/// One readiness check: its name and whether it passes (with why not).
pub type Check = (&'static str, Result<(), String>);

/// Produces the current readiness checks; called per request.
pub type Readiness = Arc<dyn Fn() -> Vec<Check> + Send + Sync>;

/// Renders a page's body; called per request.
pub type Status = Arc<dyn Fn() -> String + Send + Sync>;

/// An extra page: its path, content type and what renders it.
#[derive(Clone)]
pub struct Page {
    /// The path it answers, e.g. `/metrics`.
    pub path: &'static str,
    /// Its `content-type`.
    pub content_type: &'static str,
    /// Its body.
    pub render: Status,
}

impl Page {
    /// A JSON document about the process's state.
    pub fn json(path: &'static str, render: Status) -> Self {
        Self {
            path,
            content_type: "application/json",
            render,
        }
    }

    /// A server-rendered HTML page.
    pub fn html(path: &'static str, render: Status) -> Self {
        Self {
            path,
            content_type: "text/html; charset=utf-8",
            render,
        }
    }

    /// A plain-text page (for a terminal).
    pub fn text(path: &'static str, render: Status) -> Self {
        Self {
            path,
            content_type: "text/plain; charset=utf-8",
            render,
        }
    }

    /// The status page in its three forms: `/` and `/status` (HTML),
    /// `/status.txt` and `/status.json`, from one snapshot function per
    /// request.
    pub fn status<T: serde::Serialize + 'static>(
        snapshot: Arc<dyn Fn() -> T + Send + Sync>,
        view: fn(&T) -> (String, String, Vec<crate::status::Section>),
    ) -> Vec<Self> {
        let html: Status = {
            let snapshot = snapshot.clone();
            Arc::new(move || {
                let (title, summary, sections) = view(&snapshot());
                crate::status::html(&title, &summary, &sections)
            })
        };
        let text: Status = {
            let snapshot = snapshot.clone();
            Arc::new(move || {
                let (title, summary, sections) = view(&snapshot());
                crate::status::text(&title, &summary, &sections)
            })
        };
        let json: Status = Arc::new(move || {
            serde_json::to_string_pretty(&snapshot())
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        });
        vec![
            Self::html("/", html.clone()),
            Self::html("/status", html),
            Self::text("/status.txt", text),
            Self::json("/status.json", json),
        ]
    }

    /// `/metrics`: the Prometheus text exposition format.
    pub fn metrics(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            path: "/metrics",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            render: Arc::new(move || metrics.render()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Answers one admin request.
pub fn respond(path: &str, readiness: &Readiness, pages: &[Page]) -> Response<Full<Bytes>> {
    if let Some(page) = pages.iter().find(|p| p.path == path) {
        let mut resp = text(StatusCode::OK, (page.render)());
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(page.content_type),
        );
        return resp;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let checks = readiness();
            let mut body = String::new();
            let mut ready = true;
            for (name, result) in &checks {
                match result {
                    Ok(()) => body.push_str(&format!("{name}: ok\n")),
                    Err(why) => {
                        ready = false;
                        body.push_str(&format!("{name}: FAILING: {why}\n"));
                    }
                }
            }
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, body)
        }
        _ => {
            let mut paths = vec!["/healthz", "/readyz"];
            paths.extend(pages.iter().map(|p| p.path));
            text(StatusCode::NOT_FOUND, format!("try {}\n", paths.join(", ")))
        }
    }
}

/// The readiness check every process adds: failing once it drains, so a
/// load balancer stops sending it new connections.
pub fn lifecycle_check(life: &Lifecycle) -> Check {
    let state = if life.is_draining() {
        Err("draining: shutting down, taking no new calls".to_string())
    } else {
        Ok(())
    };
    ("lifecycle", state)
}

/// Serves the admin endpoints until the lifecycle closes: it keeps
/// answering while the process drains, so probes see `/readyz` fail.
/// Admin connections are not calls; the drain does not wait for them.
pub async fn serve(listener: TcpListener, readiness: Readiness, pages: Vec<Page>, life: Lifecycle) {
    let pages: Arc<[Page]> = pages.into();
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => { warn!(error = %e, "admin accept failed"); continue; }
            },
            _ = life.closing() => return,
        };
        let readiness = readiness.clone();
        let pages = pages.clone();
        let conn_life = life.clone();
        life.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = respond(req.uri().path(), &readiness, &pages);
                async move { Ok::<_, Infallible>(resp) }
            });
            let builder = auto::Builder::new(conn_life.task_executor());
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                _ = conn => {}
                _ = conn_life.closing() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reports_every_failing_check() {
        let r: Readiness =
            Arc::new(|| vec![("tunnel", Ok(())), ("audit", Err("disk full".into()))]);
        let resp = respond("/readyz", &r, &[]);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(respond("/healthz", &r, &[]).status(), StatusCode::OK);
        let ok: Readiness = Arc::new(|| vec![("tunnel", Ok(()))]);
        assert_eq!(respond("/readyz", &ok, &[]).status(), StatusCode::OK);
    }

    #[test]
    fn a_page_answers_with_its_type_and_is_named_in_the_hint() {
        let r: Readiness = Arc::new(Vec::new);
        let s: Status = Arc::new(|| "{\"ok\": true}".into());
        let pages = [Page::json("/connections", s)];
        let resp = respond("/connections", &r, &pages);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let missing = respond("/nothing", &r, &pages);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let m = crate::metrics::Metrics::new("edge").unwrap();
        let with_metrics = [Page::metrics(m)];
        let resp = respond("/metrics", &r, &with_metrics);
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain; version=0.0.4")));
    }
}

//! The admin listener: `/healthz` (the process is alive) and `/readyz` (it
//! can do its job: not draining, tunnel connected, audit log writable).

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
pub fn respond(path: &str, readiness: &Readiness) -> Response<Full<Bytes>> {
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
        _ => text(StatusCode::NOT_FOUND, "try /healthz or /readyz\n".into()),
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
pub async fn serve(listener: TcpListener, readiness: Readiness, life: Lifecycle) {
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => { warn!(error = %e, "admin accept failed"); continue; }
            },
            _ = life.closing() => return,
        };
        let readiness = readiness.clone();
        let conn_life = life.clone();
        life.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = respond(req.uri().path(), &readiness);
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
        let resp = respond("/readyz", &r);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(respond("/healthz", &r).status(), StatusCode::OK);
        let ok: Readiness = Arc::new(|| vec![("tunnel", Ok(()))]);
        assert_eq!(respond("/readyz", &ok).status(), StatusCode::OK);
    }
}

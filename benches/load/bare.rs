//! The reference row: a bare poem server answering one invoice's JSON from memory when the request
//! carries a bearer token (it checks the header's form only), no store, no middleware. Runs in its own process (this bench binary started again with
//! `LOAD_BARE_ADDR` and `LOAD_BARE_BODY` set), like the servers it is compared with.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use poem::http::header;
use poem::listener::TcpListener;
use poem::{get, handler, EndpointExt, Response, Route, Server};

const ADDR_VAR: &str = "LOAD_BARE_ADDR";
const BODY_VAR: &str = "LOAD_BARE_BODY";

/// Serves forever when this process was started as the bare server; returns otherwise.
pub fn serve_if_asked() {
    let (Ok(addr), Ok(body)) = (std::env::var(ADDR_VAR), std::env::var(BODY_VAR)) else { return };
    let body = bytes::Bytes::from(std::fs::read(body).expect("bare body"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        #[handler]
        fn invoice(req: &poem::Request, poem::web::Data(body): poem::web::Data<&bytes::Bytes>) -> Response {
            let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if !bearer.is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")) {
                return Response::builder().status(poem::http::StatusCode::UNAUTHORIZED).finish();
            }
            Response::builder().header(header::CONTENT_TYPE, "application/json; charset=utf-8").body(body.clone())
        }
        #[handler]
        fn ready() -> &'static str {
            "ok"
        }
        let app = Route::new().at("/invoice", get(invoice)).at("/ready", get(ready)).data(body);
        Server::new(TcpListener::bind(addr)).run(app).await.expect("bare server");
    });
    std::process::exit(0);
}

/// Starts the bare server answering `body`.
pub fn spawn(dir: &Path, addr: SocketAddr, body: &[u8]) -> Child {
    let path = dir.join("bare-body.json");
    std::fs::write(&path, body).expect("bare body");
    Command::new(std::env::current_exe().expect("own path"))
        .env(ADDR_VAR, addr.to_string())
        .env(BODY_VAR, &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bare server")
}

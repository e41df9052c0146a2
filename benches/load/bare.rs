//! The reference row: a bare poem server answering one invoice's JSON from memory, no store, no
//! middleware, no authentication. Runs in its own process (this bench binary started again with
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
        fn invoice(poem::web::Data(body): poem::web::Data<&bytes::Bytes>) -> Response {
            Response::builder().header(header::CONTENT_TYPE, "application/json; charset=utf-8").body(body.clone())
        }
        let app = Route::new().at("/invoice", get(invoice)).data(body);
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

//! The API's operations routed straight to their handlers. poem-openapi's own endpoint wraps the routes in
//! four layers every request passes through (a boxed response mapping, the query string parsed into a
//! request extension, a cookie jar, the router) and each path's methods in two more; a request moves
//! itself and its futures through each. Here a request finds its path in poem's router and its method in
//! a short list, and the query string is handed to the handler as poem-openapi's extractors expect it.
//! The document itself (`/openapi.json`, Swagger UI) is still poem-openapi's, from the API types alone.

use std::collections::HashMap;
use std::marker::PhantomData;

use poem::endpoint::BoxEndpoint;
use poem::error::MethodNotAllowedError;
use poem::http::Method;
use poem::{Endpoint, Request, Response, Route};
use poem_openapi::registry::{MetaApi, Registry};
use poem_openapi::OpenApi;

/// The description of the API `T` without its handlers: what poem-openapi's service needs to write the
/// OpenAPI document and Swagger UI.
pub struct Described<T>(PhantomData<T>);

impl<T> Default for Described<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: OpenApi> OpenApi for Described<T> {
    fn meta() -> Vec<MetaApi> {
        T::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn add_routes(self, _: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {}
}

/// Every operation of `api` under its path.
pub fn routes(api: impl OpenApi) -> Route {
    let mut table = HashMap::new();
    api.add_routes(&mut table);
    table.into_iter().fold(Route::new(), |route, (path, methods)| {
        route.at(path, Operations { by_method: methods.into_iter().collect() })
    })
}

/// The operations of one path.
struct Operations {
    by_method: Vec<(Method, BoxEndpoint<'static>)>,
}

impl Operations {
    fn find(&self, method: &Method) -> Option<&BoxEndpoint<'static>> {
        self.by_method.iter().find(|(m, _)| m == method).map(|(_, ep)| ep)
    }
}

impl Endpoint for Operations {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let (operation, head) = match self.find(req.method()) {
            Some(operation) => (operation, false),
            // A HEAD without an operation of its own is answered as the GET, without its body.
            None if *req.method() == Method::HEAD => {
                req.set_method(Method::GET);
                (self.find(&Method::GET).ok_or(MethodNotAllowedError)?, true)
            }
            None => return Err(MethodNotAllowedError.into()),
        };
        // What poem-openapi's query parameters read (its own endpoint adds it the same way; a query that
        // does not parse is no parameters).
        let query = if req.uri().query().is_some() { req.params().unwrap_or_default() } else { Vec::new() };
        req.extensions_mut().insert(poem_openapi::__private::UrlQuery(query));
        let mut resp = operation.call(req).await?;
        if head {
            resp.set_body(());
        }
        Ok(resp)
    }
}

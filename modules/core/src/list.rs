//! The contract's list rules, shared by every list endpoint: `limit` (default 50, 1–200) and `cursor` (the
//! id of the last row of the previous page), newest first; when more rows exist the response carries
//! `X-Next-Cursor` and `Link: <…>; rel="next"`.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::ApiResponse;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::SerdeJson;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<C> {
    pub limit: usize,
    /// Rows strictly older than this one.
    pub after: Option<C>,
}

impl<C: std::str::FromStr> PageRequest<C> {
    /// Validates `limit` and parses `cursor`, naming the bad parameter in the 422.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        // `str::is_empty`, not the method call: poem-openapi's `Type::is_empty` (false) would win for `&&str`.
        let after = match cursor.filter(|c| !str::is_empty(c)) {
            Some(c) => Some(c.parse().map_err(|_| Error::invalid("cursor", "not a cursor this list handed out"))?),
            None => None,
        };
        Ok(Self { limit: limit as usize, after })
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(&self) -> usize {
        self.limit + 1
    }
}

/// A page of rows as a JSON array, with the next-page headers when more rows exist.
#[derive(ApiResponse)]
pub enum ListResponse<T: ToJSON + Type> {
    /// One page, newest first.
    #[oai(status = 200)]
    Page(
        Json<Vec<T>>,
        /// Cursor of the next page; absent on the last page.
        #[oai(header = "X-Next-Cursor")]
        Option<String>,
        /// `<url>; rel="next"` for the next page; absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

impl<T: ToJSON + Type> ListResponse<T> {
    /// Cuts `rows` (fetched with [`PageRequest::fetch`]) to the page; `cursor_of` names a row's cursor.
    pub fn new(req: &Request, rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Self {
        let (rows, cursor, link) = cut(req, rows, limit, cursor_of);
        Self::Page(Json(rows), cursor, link)
    }
}

/// The same page as [`ListResponse`] in the same document, written straight from the rows' serde
/// `Serialize` (see [`SerdeJson`]): for the hottest lists, whose views carry a test that both give the
/// same JSON.
#[derive(ApiResponse)]
pub enum SerdeListResponse<T: Type + Serialize + Send> {
    /// One page, newest first.
    #[oai(status = 200)]
    Page(
        SerdeJson<Vec<T>>,
        /// Cursor of the next page; absent on the last page.
        #[oai(header = "X-Next-Cursor")]
        Option<String>,
        /// `<url>; rel="next"` for the next page; absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

impl<T: Type + Serialize + Send> SerdeListResponse<T> {
    /// Cuts `rows` as [`ListResponse::new`] does.
    pub fn new(req: &Request, rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Self {
        let (rows, cursor, link) = cut(req, rows, limit, cursor_of);
        Self::Page(SerdeJson(rows), cursor, link)
    }
}

/// Cuts `rows` (fetched with [`PageRequest::fetch`]) to the page, with the next page's cursor and link
/// when more rows exist; `cursor_of` names a row's cursor.
fn cut<T>(
    req: &Request,
    mut rows: Vec<T>,
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>, Option<String>) {
    if rows.len() <= limit {
        return (rows, None, None);
    }
    rows.truncate(limit);
    let cursor = rows.last().map(&cursor_of).unwrap_or_default();
    let link = format!("<{}>; rel=\"next\"", next_url(req, &cursor));
    (rows, Some(cursor), Some(link))
}

/// The request's path and query with `cursor` replaced.
fn next_url(req: &Request, cursor: &str) -> String {
    let mut params: Vec<&str> =
        req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("cursor=")).collect();
    let cursor_param = format!("cursor={cursor}");
    params.push(&cursor_param);
    format!("{}?{}", req.uri().path(), params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CustomerId;

    #[test]
    fn limits_and_cursors_are_checked() {
        let p = PageRequest::<CustomerId>::parse(None, None).unwrap();
        assert_eq!((p.limit, p.after), (50, None));
        assert_eq!(p.fetch(), 51);
        let e = PageRequest::<CustomerId>::parse(Some(0), None).unwrap_err();
        assert!(e.details().unwrap().contains_key("limit"));
        assert!(PageRequest::<CustomerId>::parse(Some(201), None).is_err());
        let e = PageRequest::<CustomerId>::parse(Some(10), Some("nope")).unwrap_err();
        assert!(e.details().unwrap().contains_key("cursor"));
        let id = CustomerId::generate();
        assert_eq!(PageRequest::<CustomerId>::parse(Some(200), Some(&id.to_string())).unwrap().after, Some(id));
        assert_eq!(PageRequest::<CustomerId>::parse(Some(2), Some("")).unwrap().after, None);
    }

    #[test]
    fn the_next_link_keeps_the_filters_and_replaces_the_cursor() {
        let req = Request::builder().uri("/customers?status=active&cursor=old&limit=2".parse().unwrap()).finish();
        let page = ListResponse::new(&req, vec![3, 2, 1], 2, |n: &i32| format!("c{n}"));
        let ListResponse::Page(rows, cursor, link) = page;
        assert_eq!(rows.0, vec![3, 2]);
        assert_eq!(cursor.as_deref(), Some("c2"));
        assert_eq!(link.as_deref(), Some("</customers?status=active&limit=2&cursor=c2>; rel=\"next\""));
        let last = ListResponse::new(&req, vec![1], 2, |n: &i32| format!("c{n}"));
        assert!(matches!(last, ListResponse::Page(_, None, None)));
    }
}

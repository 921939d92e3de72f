//! The web console: one static page (`console.html`, plain HTML/JS). It has no API of its
//! own: it reads `GET /dev/state` and acts through the same `/dev/*` routes as the demo and
//! the tests ([`crate::dev`]): pay an order, fail the next notification, move the clock, make
//! `admin` an admin, refund, approve or reject a post.

use http::{Method, StatusCode};

use crate::http::{Request, Response};

const PAGE: &str = include_str!("console.html");

/// Routes `/` and `/console`.
pub fn handle(req: &Request) -> Option<Response> {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/" | "/console" | "/console/") => Some(Response::bytes(
            StatusCode::OK,
            "text/html; charset=utf-8",
            PAGE,
        )),
        _ => None,
    }
}

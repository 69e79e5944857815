//! How the answer of an `@connections` call (`/post`, `/get`, `/delete`) is shown at the
//! prompt: `← 200 OK`, or `← 410 Gone GoneException`, with the body below it. The call
//! itself is made by the command engine, through the one `@connections` client.

use wsprobe_core::client::management;

/// `← 410 Gone GoneException`: the status, its reason phrase and AWS's error type.
pub(crate) fn status_line(response: &management::Response) -> String {
    let mut line = format!("← {}", response.status);
    let reason = hyper::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|status| status.canonical_reason());
    if let Some(reason) = reason {
        line.push(' ');
        line.push_str(reason);
    }
    if let Some(kind) = &response.error_type {
        line.push(' ');
        line.push_str(&wsprobe_core::text::one_line(kind));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str, error_type: Option<&str>) -> management::Response {
        management::Response {
            status,
            body: body.to_owned(),
            error_type: error_type.map(str::to_owned),
        }
    }

    #[test]
    fn status_lines_name_the_reason_and_the_aws_error() {
        assert_eq!(status_line(&response(200, "", None)), "← 200 OK");
        assert_eq!(
            status_line(&response(410, "{}", Some("GoneException"))),
            "← 410 Gone GoneException"
        );
        assert_eq!(status_line(&response(599, "", None)), "← 599");
    }
}

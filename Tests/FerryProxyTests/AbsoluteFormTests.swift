import Foundation
import Testing

@testable import FerryProxy

/// Absolute-form request targets (`GET http://host/path HTTP/1.1`, RFC 9112 §3.2.2): a server MUST
/// accept them. Ferry refused them with 400 because the router only knew origin-form. They are now
/// routed on their path and sent upstream in origin-form, with the target's authority as Host.
@Suite struct AbsoluteFormTests {
    @Test func absoluteTargetsAreSplitIntoAuthorityAndOriginForm() {
        let cases: [(String, RequestRules.AbsoluteTarget?)] = [
            ("http://example.com/a/b?c=d", .init(authority: "example.com", originForm: "/a/b?c=d")),
            ("HTTPS://example.com:8443", .init(authority: "example.com:8443", originForm: "/")),
            ("http://[::1]:80?q", .init(authority: "[::1]:80", originForm: "/?q")),
            ("/a/b", nil), ("*", nil), ("http:///path", nil), ("http://user@host/", nil),
            ("ftp://example.com/", nil), ("example.com:443", nil), ("", nil),
        ]
        for (uri, expected) in cases {
            #expect(RequestRules.absoluteTarget(uri) == expected, "\(uri)")
        }
    }

    @Test func anAbsoluteFormRequestIsRoutedOnItsPathWithItsAuthorityAsHost() async throws {
        try await withFramingBackendProxy { proxy in
            let response = try rawExchange(
                port: proxy.port,
                "GET http://Example.com:8080/request?x=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 200 OK"), "\(response.debugDescription)")
            // The body is the request as the backend received it.
            #expect(response.contains("\r\n\r\nGET /request?x=1 HTTP/1.1\r\n"), "\(response.debugDescription)")
            #expect(response.contains("\r\nHost: Example.com:8080\r\n"), "\(response.debugDescription)")
            #expect(!response.contains("Host: other"), "\(response.debugDescription)")
        }
    }

    @Test func anAbsoluteFormRequestStillNeedsAHostHeaderAndAValidAuthority() async throws {
        try await withFramingBackendProxy { proxy in
            for request in [
                "GET http://example.com/request HTTP/1.1\r\nConnection: close\r\n\r\n",
                "GET http://user@example.com/request HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ] {
                let response = try rawExchange(port: proxy.port, request)
                #expect(response.hasPrefix("HTTP/1.1 400"), "\(request.debugDescription): \(response.debugDescription)")
            }
        }
    }
}

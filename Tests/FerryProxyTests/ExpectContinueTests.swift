import Foundation
import Testing

/// The body "hello", framed each way a request can frame it.
let helloBodies = [("Content-Length: 5", "hello"), ("Transfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n")]

/// `Expect: 100-continue` (RFC 9110 §10.1.1): the client sends the head and waits for `100
/// Continue` before its body (curl does so for large uploads, and gives up waiting after 1 s).
/// Ferry forwarded the Expect header and dropped the backend's 100, so every such upload stalled
/// for the client's whole timeout. Ferry now answers it itself, as nginx does.
@Suite struct ExpectContinueTests {
    static let continueLine = "HTTP/1.1 100 Continue\r\n\r\n"

    @Test func ferrySendsContinueAndTheBodyGoesUpstreamWithoutTheExpectation() async throws {
        try await withFramingBackendProxy { proxy in
            for (framing, body) in helloBodies {
                let started = Date()
                let response = try rawExchange(
                    port: proxy.port,
                    "POST /request HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\(framing)\r\nConnection: close\r\n\r\n",
                    then: (after: Self.continueLine, send: body))
                #expect(response.hasPrefix(Self.continueLine + "HTTP/1.1 200 OK"), "\(response.debugDescription)")
                // The backend echoes what it received: the body, and no Expect header.
                #expect(response.hasSuffix(body), "\(response.debugDescription)")
                #expect(!response.lowercased().contains("expect:"), "\(response.debugDescription)")
                #expect(Date().timeIntervalSince(started) < 1, "the client waited for its 100 Continue")
            }
        }
    }

    @Test func noContinueWithoutABodyOrForAnHTTP10Client() async throws {
        try await withFramingBackendProxy { proxy in
            let bodiless = try rawExchange(
                port: proxy.port,
                "GET /length HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            #expect(bodiless.hasPrefix("HTTP/1.1 200 OK"), "\(bodiless.debugDescription)")
            let http10 = try rawExchange(
                port: proxy.port,
                "POST /request HTTP/1.0\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
            #expect(http10.hasPrefix("HTTP/1.1 200 OK"), "\(http10.debugDescription)")
            #expect(!http10.contains("100 Continue"))
        }
    }

    /// A request refused by Ferry itself (here: no route) gets its final answer instead of 100; the
    /// client may then not send its body, so the connection closes rather than read its next
    /// request as that body.
    @Test func aLocalAnswerInsteadOfContinueClosesTheConnection() async throws {
        guard PythonBackend.available else { return }
        let backend = try PythonBackend(script: "framing_backend.py", arguments: [])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/api/", strip: nil)])
        let result = try rawConversation(
            port: proxy.port,
            "POST /elsewhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        await proxy.stop()
        #expect(result.received.hasPrefix("HTTP/1.1 404"), "\(result.received.debugDescription)")
        #expect(result.received.contains("Connection: close"), "\(result.received.debugDescription)")
        #expect(result.closedByPeer)
    }
}

/// `curl --http2 http://…` asks to upgrade to `h2c` (RFC 7540 §3.2). Ferry does not speak HTTP/2
/// and used to refuse the request with 400; RFC 9110 §7.8 lets a server ignore an Upgrade, which
/// nginx does: the request is served as HTTP/1.1, and the backend never sees the Upgrade (nor the
/// HTTP2-Settings header its Connection header lists).
@Suite struct IgnoredUpgradeTests {
    @Test func anH2CUpgradeRequestIsServedAsHTTP11() async throws {
        try await withFramingBackendProxy { proxy in
            let response = try rawExchange(
                port: proxy.port,
                "GET /request HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
                    + "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 200 OK"), "\(response.debugDescription)")
            // The body is the request as the backend received it.
            #expect(response.contains("\r\n\r\nGET /request HTTP/1.1\r\n"), "\(response.debugDescription)")
            let lowered = response.lowercased()
            #expect(!lowered.contains("upgrade") && !lowered.contains("http2-settings"), "\(response.debugDescription)")
        }
    }

    /// A WebSocket upgrade with a body: the bytes after its head would be WebSocket frames to one
    /// side and the request's content to the other. A backend waited for the announced bytes
    /// before answering 101, Ferry for the 101 before relaying them: 60 s, then 504. Now 400 at once.
    @Test func aWebSocketUpgradeWithABodyIsRefused() async throws {
        try await withFramingBackendProxy { proxy in
            for (framing, body) in helloBodies {
                let started = Date()
                let response = try rawExchange(
                    port: proxy.port,
                    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(framing)\r\n\r\n\(body)"
                )
                #expect(response.hasPrefix("HTTP/1.1 400"), "\(response.debugDescription)")
                #expect(response.contains("must not have a body"), "\(response.debugDescription)")
                #expect(Date().timeIntervalSince(started) < 5)
            }
        }
    }
}

import Foundation
import Testing

/// A client that closes its socket sends a FIN (over TLS too, when it skips close_notify, as many
/// do). Ferry must then close its side: it used to keep such a connection in CLOSE_WAIT until the
/// keep-alive timeout (75 s), holding a descriptor and the connection's memory, so clients that
/// open and close connections quickly could exhaust the worker. What was fully received is still
/// answered first (HAProxy's behaviour; a client may shut down its sending side after a request).
/// Each test's `timeout` is far below the keep-alive timeout: a connection left open fails it.
@Suite struct ClientHalfCloseTests {
    @Test func anIdleKeepAliveConnectionClosesWhenTheClientDoes() async throws {
        try await withFramingBackendProxy { proxy in
            let result = try rawConversation(
                port: proxy.port, "GET /length HTTP/1.1\r\nHost: x\r\n\r\n", halfClose: .after("hello"))
            #expect(result.closedByPeer, "still open after the client's FIN: \(result.received.debugDescription)")
            #expect(result.received.hasPrefix("HTTP/1.1 200 OK") && result.received.hasSuffix("hello"))
        }
    }

    @Test func aRequestFollowedByTheClientsFINIsAnsweredThenClosed() async throws {
        try await withFramingBackendProxy { proxy in
            let result = try rawConversation(
                port: proxy.port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", halfClose: .afterSending)
            #expect(result.closedByPeer, "\(result.received.debugDescription)")
            #expect(result.received.hasPrefix("HTTP/1.1 200 OK") && result.received.hasSuffix("\r\n\r\nslow"))
            #expect(result.received.contains("Connection: close"), "\(result.received.debugDescription)")
        }
    }

    /// The last pipelined request answered by Ferry itself (here: no route) is answered from its
    /// head, while its end is still queued: the connection stayed open (found by fuzzing).
    @Test func aPipelinedRequestAnsweredLocallyAfterTheFINClosesTheConnection() async throws {
        guard PythonBackend.available else { return }
        let backend = try PythonBackend(script: "framing_backend.py", arguments: [])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/length", strip: nil)])
        let result = try rawConversation(
            port: proxy.port,
            "GET /length HTTP/1.1\r\nHost: x\r\n\r\nGET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n",
            halfClose: .afterSending)
        await proxy.stop()
        #expect(result.closedByPeer, "still open after the client's FIN: \(result.received.debugDescription)")
        #expect(result.received.hasPrefix("HTTP/1.1 200 OK"), "\(result.received.debugDescription)")
        #expect(result.received.contains("hello" + "HTTP/1.1 404"), "\(result.received.debugDescription)")
        #expect(result.received.hasSuffix("ferry: no route for this path\n"))
        // Whether the 404 itself says `Connection: close` depends on whether the FIN came in the
        // same read as the requests (reads pause while a pipelined request waits), so not checked.
    }

    @Test func pipelinedRequestsBeforeTheFINAreAllAnswered() async throws {
        try await withFramingBackendProxy { proxy in
            let result = try rawConversation(
                port: proxy.port,
                "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /length HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n",
                halfClose: .afterSending)
            #expect(result.closedByPeer, "\(result.received.debugDescription)")
            #expect(result.received.components(separatedBy: "HTTP/1.1 200 OK").count == 4, "\(result.received)")
            #expect(result.received.hasSuffix("0\r\n\r\n"), "the last (chunked) response is complete")
        }
    }

    @Test func aFINInsideARequestClosesWithoutAnAnswer() async throws {
        try await withFramingBackendProxy { proxy in
            let inHead = try rawConversation(
                port: proxy.port, "GET /length HTTP/1.1\r\nHo", halfClose: .afterSending)
            #expect(inHead.closedByPeer && inHead.received.isEmpty, "\(inHead.received.debugDescription)")
            let inBody = try rawConversation(
                port: proxy.port, "POST /request HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
                halfClose: .afterSending)
            #expect(inBody.closedByPeer && inBody.received.isEmpty, "\(inBody.received.debugDescription)")
            // The backend connection that carried the cut request is not reused: the next request's
            // body is echoed exactly, not read after the first one's missing 90 bytes.
            let next = try rawExchange(
                port: proxy.port,
                "POST /request HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfresh")
            #expect(next.hasPrefix("HTTP/1.1 200 OK") && next.hasSuffix("\r\n\r\nfresh"), "\(next.debugDescription)")
        }
    }
}

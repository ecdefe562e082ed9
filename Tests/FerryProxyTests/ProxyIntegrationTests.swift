import FerryConfig
import FerryProxy
import Foundation
import Testing

/// A real `ProxyServer` on loopback against real Python backends (Tornado, and a misbehaving one).
@Suite(.serialized) struct ProxyIntegrationTests {
    @Test func keepAliveRequestsReuseOnePooledConnection() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let response = try rawExchange(
            port: proxy.port,
            "GET /tts-ws/ok/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /tts-ws/ok/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /tts-ws/ok/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        #expect(response.contains("ok 1"))
        #expect(response.contains("ok 2"))
        #expect(response.contains("ok 3"))
        let stats = await proxy.server.stats()
        let pool = try #require(stats.pools.first { $0.protocol == "http" })
        #expect(pool.opened == 1, "\(pool)")
        #expect(pool.reused == 2)
        await proxy.stop()
    }

    /// Pipelined requests are answered one by one, in order; a malformed one behind them is
    /// answered with 400 after the responses before it, then the connection closes.
    @Test func pipelinedRequestsAreAnsweredInOrderAndAMalformedOneLast() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let requests = (1...5).map { "GET /tts-ws/ok/\($0) HTTP/1.1\r\nHost: x\r\n\r\n" }.joined()
        let response = try rawExchange(port: proxy.port, requests + "GARBAGE\r\n\r\n")
        let order = (1...5).compactMap { response.range(of: "ok \($0)")?.lowerBound }
        #expect(order.count == 5, "\(response)")
        #expect(order == order.sorted(), "responses out of order: \(response)")
        let rejection = try #require(response.range(of: "HTTP/1.1 400"), "\(response)")
        #expect(order.allSatisfy { $0 < rejection.lowerBound })
        #expect(response.components(separatedBy: "HTTP/1.1 ").count == 7, "five answers and one 400")
        await proxy.stop()
    }

    /// A pipelined request whose body turns out malformed is answered with 400 after the request
    /// before it, and never sent upstream: it was, with a head promising chunks that never came,
    /// and the backend waited for them until the response timeout (504 after 60 s; found by fuzzing).
    @Test func aPipelinedRequestWithAMalformedBodyIsNotSentUpstream() async throws {
        try await withFramingBackendProxy { proxy in
            let started = Date()
            let response = try rawExchange(
                port: proxy.port,
                "GET /length HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "POST /request HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            #expect(response.hasPrefix("HTTP/1.1 200 OK"), "\(response.debugDescription)")
            #expect(response.contains("hello" + "HTTP/1.1 400 Bad Request"), "\(response.debugDescription)")
            #expect(!response.contains("POST /request"), "the backend got the request: \(response.debugDescription)")
            #expect(Date().timeIntervalSince(started) < 5)
        }
    }

    /// A request body that turns malformed while its response is already on its way cannot be
    /// answered with 400: the status line would land in the middle of the response body. The
    /// connection closes instead (the client sees a response cut short, as from nginx).
    @Test func aBodyThatTurnsMalformedAfterTheResponseStartedClosesWithoutA400() async throws {
        try await withFramingBackendProxy { proxy in
            let response = try rawExchange(
                port: proxy.port,
                "POST /partial HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                then: (after: "\r\n\r\nhello", send: "zz\r\n"))
            #expect(response.hasPrefix("HTTP/1.1 200 OK"), "\(response.debugDescription)")
            #expect(response.hasSuffix("\r\n\r\nhello"), "\(response.debugDescription)")
            #expect(!response.contains("400"), "\(response.debugDescription)")
        }
    }

    @Test func ferryAnswers404ItselfWhenNoRouteMatches() async throws {
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/tts-ws")])
        let response = try rawExchange(
            port: proxy.port, "GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 404"))
        #expect(response.contains("Server: ferry"))
        #expect(response.contains("ferry: no route"))
        await proxy.stop()
    }

    @Test func respondAndRedirectRoutesAnswerLocally() async throws {
        let proxy = try await ProxyHarness(
            backendPort: 9,
            routes: [
                RouteConfiguration(path: "/admin", action: .respond(status: 403, body: "go away\n")),
                RouteConfiguration(path: "/old", action: .redirect(location: "https://example.org/", status: 301)),
            ])
        let denied = try rawExchange(port: proxy.port, "GET /admin/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(denied.hasPrefix("HTTP/1.1 403"))
        #expect(denied.hasSuffix("go away\n"))
        let moved = try rawExchange(port: proxy.port, "GET /old HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(moved.hasPrefix("HTTP/1.1 301"))
        #expect(moved.contains("Location: https://example.org/"))
        await proxy.stop()
    }

    @Test func protocolIsDecidedPerRequestAndRouteRulesHold() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(
            backendPort: backend.port,
            routes: [route("/tts-ws/tts", protocol: .websocket), route("/tts-ws/tts/wav/", protocol: .http)])
        let upgrade =
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        let plainOnWebSocketRoute = try rawExchange(
            port: proxy.port, "GET /tts-ws/tts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(plainOnWebSocketRoute.hasPrefix("HTTP/1.1 426"))
        let upgradeOnHTTPRoute = try rawExchange(
            port: proxy.port, "GET /tts-ws/tts/wav/file0.wav HTTP/1.1\r\nHost: x\r\n\(upgrade)\r\n")
        #expect(upgradeOnHTTPRoute.hasPrefix("HTTP/1.1 400"))
        let tunnel = try rawExchange(
            port: proxy.port, "GET /tts-ws/tts HTTP/1.1\r\nHost: x\r\n\(upgrade)\r\n", timeout: 1, readUntilClose: false
        )
        #expect(tunnel.hasPrefix("HTTP/1.1 101"))
        #expect(tunnel.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        await proxy.stop()
    }

    @Test func webSocketEchoThroughTheTunnelWithARealClient() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "seed_tornado_app.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let script = """
            import asyncio, websockets, sys
            async def main():
                async with websockets.connect("ws://127.0.0.1:\(proxy.port)/tts-ws/tts") as ws:
                    for i in range(5):
                        await ws.send(f"hello {i}")
                        assert await ws.recv() == f"hello {i}"
                    await ws.send(b"\\x00\\x01" * 40000)
                    assert await ws.recv() == b"\\x00\\x01" * 40000
                    pong = await ws.ping()
                    await asyncio.wait_for(pong, 5)
                print("ok")
            asyncio.run(main())
            """
        let result = try shell("/usr/bin/env", ["python3", "-c", script])
        #expect(result.output.contains("ok"))
        let stats = await proxy.server.stats()
        #expect(stats.pools.first { $0.protocol == "websocket" }?.upgrades == 1)
        #expect(stats.pools.first { $0.protocol == "http" }?.opened == 0)
        await proxy.stop()
    }

    @Test func idleWebSocketTunnelIsClosedAfterItsIdleTimeout() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "seed_tornado_app.py", arguments: [files.directory.path])
        var limits = LimitSettings()
        limits.websocketIdleTimeout = .seconds(1)
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")], limits: limits)
        let script = """
            import asyncio, time, websockets
            async def main():
                async with websockets.connect("ws://127.0.0.1:\(proxy.port)/tts-ws/tts", ping_interval=None) as ws:
                    await ws.send("still here")
                    assert await ws.recv() == "still here"
                    started = time.time()
                    try:
                        await asyncio.wait_for(ws.recv(), 10)
                        print("no close")
                    except websockets.exceptions.ConnectionClosed:
                        print(f"closed after {time.time() - started:.1f}s")
            asyncio.run(main())
            """
        let result = try shell("/usr/bin/env", ["python3", "-c", script])
        #expect(
            result.output.contains("closed after 1.") || result.output.contains("closed after 2."), "\(result.output)")
        #expect(await proxy.server.stats().activeTunnels == 0)
        await proxy.stop()
    }

    @Test func misbehavingBackendConnectionsAreNeverReused() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(
            backendPort: backend.port, routes: [route("/tts-ws", responseTimeout: .milliseconds(500))])
        func get(_ path: String) throws -> String {
            try rawExchange(port: proxy.port, "GET /tts-ws\(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        }
        // Extra bytes after a complete response: the body is right, the connection is discarded.
        #expect(try get("/extra-bytes").hasSuffix("hello"))
        #expect(try get("/ok/1").hasSuffix("ok 1"))
        // Connection: close from the backend.
        #expect(try get("/connection-close").hasSuffix("closing"))
        #expect(try get("/ok/2").hasSuffix("ok 2"))
        // Closes mid-body: the client sees a truncated response end, never a forged one.
        let truncated = try get("/close-mid-body")
        #expect(truncated.hasPrefix("HTTP/1.1 200"))
        #expect(!truncated.contains("0123456789" + "0"))
        // Never answers: 504 after the route's response timeout.
        #expect(try get("/never").hasPrefix("HTTP/1.1 504"))
        // An upgrade answered with 200 is relayed as a normal response, then the connection closes.
        let refused = try rawExchange(
            port: proxy.port,
            "GET /tts-ws/upgrade-200 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        #expect(refused.hasPrefix("HTTP/1.1 200"))
        #expect(refused.hasSuffix("not a websocket"))
        let stats = await proxy.server.stats()
        let pool = try #require(stats.pools.first { $0.protocol == "http" })
        #expect(pool.closed["unexpected_data"] == 1)
        #expect((pool.closed["backend_close"] ?? 0) >= 2)
        #expect(pool.closed["error"] == 1)
        #expect(stats.pools.first { $0.protocol == "websocket" }?.closed["refused"] == 1)
        await proxy.stop()
    }

    @Test func idempotentRequestFailingOnAReusedConnectionIsRetriedOnceOnAFreshOne() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let backend = try PythonBackend(script: "misbehaving_backend.py", arguments: [files.directory.path])
        let proxy = try await ProxyHarness(backendPort: backend.port, routes: [route("/tts-ws")])
        let first = try rawExchange(
            port: proxy.port, "GET /tts-ws/flaky HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(first.hasSuffix("flaky ok"))
        // The pooled connection now closes on its next request: the proxy retries on a new one.
        let second = try rawExchange(
            port: proxy.port, "GET /tts-ws/flaky HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(second.hasPrefix("HTTP/1.1 200"), "\(second)")
        #expect(second.hasSuffix("flaky ok"))
        // A POST is not idempotent: it is not retried, the client gets 502.
        let post = try rawExchange(
            port: proxy.port, "POST /tts-ws/flaky HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        #expect(post.hasPrefix("HTTP/1.1 502"), "\(post)")
        let stats = await proxy.server.stats()
        let pool = try #require(stats.pools.first { $0.protocol == "http" })
        #expect(pool.retries == 1)
        await proxy.stop()
    }

    @Test func unixSocketBackend() async throws {
        guard PythonBackend.available else { return print("skipped: python3 with tornado/websockets is missing") }
        let files = try FilesFixture()
        let socketPath = "/tmp/ferry-test-\(UUID().uuidString.prefix(8)).sock"
        defer { unlink(socketPath) }
        let backend = try PythonBackend(
            script: "misbehaving_backend.py", arguments: [files.directory.path, "--unix", socketPath])
        _ = backend
        let proxy = try await ProxyHarness(
            backendPort: 0, backendAddress: .unix(path: socketPath), routes: [route("/tts-ws")])
        let response = try rawExchange(
            port: proxy.port, "GET /tts-ws/ok/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(response.hasSuffix("ok 7"))
        await proxy.stop()
    }

    /// A backend that refuses connections is tried again (with backoff) until its queue_timeout
    /// (300 ms in the harness), then 503 with Retry-After: it may be restarting (issue 14, item 4).
    @Test func refusedBackendIsRetriedUntilItsQueueTimeoutThen503() async throws {
        let port = try freePort()
        let proxy = try await ProxyHarness(backendPort: port, routes: [route("/tts-ws")])
        let started = Date()
        let response = try rawExchange(
            port: proxy.port, "GET /tts-ws/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(Date().timeIntervalSince(started) >= 0.3)
        #expect(response.hasPrefix("HTTP/1.1 503"), "\(response)")
        #expect(response.contains("\r\nRetry-After: 1\r\n"))
        #expect(response.contains("backend app"))
        await proxy.stop()
    }

    @Test(arguments: [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Space : a\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GARBAGE\r\n\r\n",
    ])
    func smugglingAttemptsGet400AndTheConnectionCloses(request: String) async throws {
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/", strip: nil)])
        let response = try rawExchange(port: proxy.port, request + "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 400"), "\(response)")
        #expect(response.components(separatedBy: "HTTP/1.1").count == 2, "one response, then close")
        // The worker lives on.
        let next = try rawExchange(port: proxy.port, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(next.hasPrefix("HTTP/1.1 503"))
        await proxy.stop()
    }

    @Test func tooLargeHeadersGet431() async throws {
        var limits = LimitSettings()
        limits.maxHeaderBytes = 2048
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/", strip: nil)], limits: limits)
        let big = String(repeating: "a", count: 4000)
        let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(big)\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 431"))
        await proxy.stop()
    }

    /// A Content-Length repeated with the same value (`5, 5`, which RFC 9110 §8.6 lets a recipient
    /// take as 5) frames the body by that length: its bytes go to the backend, not read as the next
    /// request (the reader used to frame such a request as having no body, and answered "hello"
    /// with 400).
    @Test func aRepeatedEqualContentLengthFramesTheBody() async throws {
        try await withFramingBackendProxy { proxy in
            let response = try rawExchange(
                port: proxy.port,
                "POST /request HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello"
                    + "GET /length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(response.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(response.debugDescription)")
            #expect(response.contains("hello") && !response.contains("HTTP/1.1 400"), "\(response.debugDescription)")
        }
    }

    /// A WebSocket upgrade whose backend cannot be reached gets its 502 with `Connection: close`,
    /// and the connection ends: nothing after an upgrade request is read as HTTP, so a connection
    /// kept open would only wait for its idle timeout.
    @Test func aWebSocketUpgradeToAnUnreachableBackendGets502AndTheConnectionEnds() async throws {
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/", strip: nil)])
        let started = Date()
        let response = try rawExchange(
            port: proxy.port,
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            timeout: 5)
        #expect(response.hasPrefix("HTTP/1.1 502"), "\(response)")
        #expect(response.contains("Connection: close"), "\(response)")
        #expect(Date().timeIntervalSince(started) < 3, "the connection was kept open after the refusal")
        await proxy.stop()
    }

    /// Ferry answers CONNECT itself (it is a reverse proxy, not a tunnel to anywhere): the backend
    /// is never asked (an unreachable one would give 502), and the connection ends.
    @Test func connectIsRefusedWith405AndTheConnectionEnds() async throws {
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/", strip: nil)])
        let response = try rawExchange(
            port: proxy.port,
            "CONNECT / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 405"), "\(response)")
        #expect(response.contains("ferry: CONNECT is not supported"))
        #expect(response.contains("Connection: close"))
        #expect(!response.contains("HTTP/1.1 502"), "\(response)")
        await proxy.stop()
    }

    @Test func bodyOverTheCapGets413() async throws {
        var limits = LimitSettings()
        limits.maxBodyBytes = 10
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/", strip: nil)], limits: limits)
        let response = try rawExchange(
            port: proxy.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        #expect(response.hasPrefix("HTTP/1.1 413"))
        await proxy.stop()
    }

    @Test func slowlorisGets408() async throws {
        var limits = LimitSettings()
        limits.headerTimeout = .milliseconds(300)
        let proxy = try await ProxyHarness(backendPort: 9, routes: [route("/", strip: nil)], limits: limits)
        let response = try rawExchange(port: proxy.port, "GET / HTTP/1.1\r\nHost: x\r\n", timeout: 3)
        #expect(response.hasPrefix("HTTP/1.1 408"))
        await proxy.stop()
    }
}

func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

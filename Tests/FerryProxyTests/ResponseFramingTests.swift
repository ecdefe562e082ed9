import FerryConfig
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import FerryProxy

/// Ferry writes responses itself (`ResponseFramer`): each kind of backend framing must reach the
/// client as a correctly framed HTTP/1.1 (or 1.0) response.
@Suite struct ResponseFramingTests {
    /// Splits a raw response into head and body, decoding chunks when the head says chunked
    /// (over bytes: "\r\n" is one Character in Swift).
    func parse(_ raw: String) throws -> (head: String, body: String, chunked: Bool) {
        let bytes = Array(raw.utf8)
        let crlf: [UInt8] = [13, 10]
        func find(_ needle: [UInt8], from start: Int) -> Int? {
            guard bytes.count >= needle.count else { return nil }
            var index = start
            while index + needle.count <= bytes.count {
                if Array(bytes[index..<index + needle.count]) == needle { return index }
                index += 1
            }
            return nil
        }
        guard let split = find(crlf + crlf, from: 0) else { throw TestFailure("no head in \(raw.debugDescription)") }
        let head = String(decoding: bytes[..<split], as: UTF8.self)
        var position = split + 4
        let chunked = head.lowercased().contains("transfer-encoding: chunked")
        guard chunked else { return (head, String(decoding: bytes[position...], as: UTF8.self), false) }
        var body: [UInt8] = []
        while let lineEnd = find(crlf, from: position) {
            guard let size = Int(String(decoding: bytes[position..<lineEnd], as: UTF8.self), radix: 16) else {
                throw TestFailure("bad chunk size in \(raw.debugDescription)")
            }
            position = lineEnd + 2
            if size == 0 {
                #expect(Array(bytes[position...]) == crlf, "the last chunk ends the message: \(raw.debugDescription)")
                return (head, String(decoding: body, as: UTF8.self), true)
            }
            guard position + size + 2 <= bytes.count else { break }
            body += bytes[position..<position + size]
            #expect(Array(bytes[position + size..<position + size + 2]) == crlf)
            position += size + 2
        }
        throw TestFailure("chunked body without its last chunk: \(raw.debugDescription)")
    }

    func withProxy(_ body: (Int) async throws -> Void) async throws {
        try await withProxyHarness { try await body($0.port) }
    }

    func withProxyHarness(_ body: (ProxyHarness) async throws -> Void) async throws {
        try await withFramingBackendProxy(body)
    }

    @Test func eachBackendFramingReachesAnHTTP11Client() async throws {
        try await withProxy { port in
            let request = { (path: String) in "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" }
            let length = try parse(rawExchange(port: port, request("/length")))
            #expect(length.head.contains("Content-Length: 5") && !length.chunked && length.body == "hello")
            let chunked = try parse(rawExchange(port: port, request("/chunked")))
            #expect(chunked.chunked && chunked.body == "hello world!", "\(chunked)")
            #expect(chunked.head.contains("X-Kind: chunked"))
            // Close-delimited at the backend: chunked to an HTTP/1.1 client.
            let eof = try parse(rawExchange(port: port, request("/eof")))
            #expect(eof.chunked && eof.body == "streamed until close", "\(eof)")
            let notModified = try parse(rawExchange(port: port, request("/304")))
            #expect(notModified.head.hasPrefix("HTTP/1.1 304"))
            #expect(!notModified.head.lowercased().contains("content-length") && notModified.body.isEmpty)
            #expect(notModified.head.contains("ETag: \"x\""))
            let noContent = try parse(rawExchange(port: port, request("/204")))
            #expect(noContent.head.hasPrefix("HTTP/1.1 204") && noContent.body.isEmpty)
            #expect(!noContent.head.lowercased().contains("transfer-encoding"))
        }
    }

    @Test func anHTTP10ClientGetsNoChunksButTheEndOfTheConnection() async throws {
        try await withProxy { port in
            for path in ["/chunked", "/eof"] {
                let raw = try rawExchange(port: port, "GET \(path) HTTP/1.0\r\nHost: x\r\n\r\n")
                let response = try parse(raw)
                #expect(!response.chunked, "\(raw.debugDescription)")
                #expect(response.head.contains("Connection: close"))
                #expect(response.body == (path == "/eof" ? "streamed until close" : "hello world!"))
            }
        }
    }

    @Test func headResponsesKeepTheirLengthAndCarryNoBody() async throws {
        try await withProxy { port in
            // Two requests on one connection: the HEAD response must not eat into the next one.
            let raw = try rawExchange(
                port: port,
                "HEAD /length HTTP/1.1\r\nHost: x\r\n\r\nGET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let parts = raw.components(separatedBy: "HTTP/1.1 200 OK")
            #expect(parts.count == 3, "\(raw.debugDescription)")
            #expect(parts[1].contains("Content-Length: 5") && parts[1].hasSuffix("\r\n\r\n"))
            let second = try parse("HTTP/1.1 200 OK" + parts[2])
            #expect(second.chunked && second.body == "hello world!")
        }
    }

    @Test func keepAliveResponsesFollowEachOtherIntact() async throws {
        try await withProxy { port in
            let requests = ["/chunked", "/length", "/304", "/chunked"].map { "GET \($0) HTTP/1.1\r\nHost: x\r\n\r\n" }
            let raw = try rawExchange(
                port: port, requests.joined() + "GET /length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(raw.components(separatedBy: "HTTP/1.1 ").count == 6, "\(raw.debugDescription)")
            #expect(raw.components(separatedBy: "0\r\n\r\n").count == 3, "two chunked bodies, each terminated")
            #expect(raw.hasSuffix("hello"))
        }
    }

    /// Requests are written upstream as bytes too (`RequestRules.writeUpstreamRequest`): the
    /// backend must get each framing intact, one request after the other on a pooled connection.
    @Test func requestBodiesReachTheBackendFramedAsTheClientSentThem() async throws {
        try await withProxy { port in
            // The echo is the backend's view of the request: head, blank line, raw body.
            func echoed(_ raw: String) throws -> String { try parse(raw).body }
            let chunkedRequest =
                "POST /request HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
            let lengthRequest = "PUT /request HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
            let emptyPost = "POST /request HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            let raw = try rawExchange(port: port, chunkedRequest + lengthRequest + emptyPost)
            let responses = raw.components(separatedBy: "HTTP/1.1 200 OK").dropFirst().map { "HTTP/1.1 200 OK" + $0 }
            #expect(responses.count == 3, "\(raw.debugDescription)")
            guard responses.count == 3 else { return }
            let chunked = try echoed(responses[0])
            #expect(chunked.hasPrefix("POST /request HTTP/1.1\r\n"))
            #expect(chunked.contains("\r\nTransfer-Encoding: chunked\r\n"))
            #expect(chunked.hasSuffix("\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"), "\(chunked.debugDescription)")
            let length = try echoed(responses[1])
            #expect(length.hasPrefix("PUT /request HTTP/1.1\r\n") && length.contains("\r\nContent-Length: 4\r\n"))
            #expect(length.hasSuffix("\r\n\r\nabcd") && !length.lowercased().contains("transfer-encoding"))
            // A POST without a body says so, so that no backend waits for one.
            let empty = try echoed(responses[2])
            #expect(
                empty.contains("\r\nContent-Length: 0\r\n") && empty.hasSuffix("\r\n\r\n"), "\(empty.debugDescription)")
            #expect(empty.contains("\r\nX-Forwarded-Proto: http\r\n") && !empty.contains("Connection: close"))
        }
    }

    /// A client may list Content-Length or Transfer-Encoding in its Connection header. They are
    /// still what delimits the body Ferry forwards: dropping them as hop-by-hop would send the body
    /// unframed, and the backend would read it as the start of the next request.
    @Test func framingHeadersListedInConnectionStillFrameTheBodyUpstream() async throws {
        try await withProxy { port in
            let raw = try rawExchange(
                port: port,
                "POST /request HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding\r\n"
                    + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    + "PUT /request HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: 4\r\n\r\nabcd"
                    + "GET /length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let responses = raw.components(separatedBy: "HTTP/1.1 200 OK").dropFirst().map { "HTTP/1.1 200 OK" + $0 }
            #expect(responses.count == 3, "\(raw.debugDescription)")
            guard responses.count == 3 else { return }
            let chunked = try parse(responses[0]).body
            #expect(chunked.contains("\r\nTransfer-Encoding: chunked\r\n"), "\(chunked.debugDescription)")
            #expect(chunked.hasSuffix("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "\(chunked.debugDescription)")
            let length = try parse(responses[1]).body
            #expect(length.contains("\r\nContent-Length: 4\r\n") && length.hasSuffix("\r\n\r\nabcd"))
            #expect(responses[2].hasSuffix("hello"))
        }
    }

    /// A backend that answers before reading the request body must not see the rest of that body
    /// as its next request: the connection is not pooled.
    @Test func aConnectionWhoseRequestWasNotFullySentIsNotReused() async throws {
        try await withProxyHarness { proxy in
            // The response ends while the body is still on its way; the rest of the body follows,
            // then a second request on the same client connection. Reusing the backend connection
            // would make the backend read "abc" (all it got of the body) glued to that request.
            let rest = String(repeating: "z", count: 97)
            let raw = try rawExchange(
                port: proxy.port, "POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
                then: (after: "early", send: rest + "GET /length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
            #expect(raw.hasPrefix("HTTP/1.1 200 OK") && raw.contains("early"), "\(raw.debugDescription)")
            #expect(raw.hasSuffix("hello"), "\(raw.debugDescription)")
            let pools = await proxy.server.stats().pools
            #expect(pools.reduce(0) { $0 + $1.reused } == 0, "\(pools)")
            #expect(pools.reduce(0) { $0 + $1.opened } == 2, "\(pools)")
        }
    }

    /// IPv6 end to end: a client on ::1, a backend on ::1; the client's address reaches the
    /// backend in X-Forwarded-For and, bracketed and quoted (RFC 7239), in Forwarded.
    @Test func anIPv6ClientReachesAnIPv6Backend() async throws {
        guard PythonBackend.available else { return }
        let backend = try PythonBackend(script: "framing_backend.py", arguments: ["::1"])
        let proxy = try await ProxyHarness(
            backendPort: backend.port, backendAddress: .inet(host: "::1", port: backend.port),
            routes: [route("/", strip: nil)], listenHost: "::1")
        do {
            let raw = try rawExchange(
                port: proxy.port, "GET /request HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", ipv6: true)
            let echoed = try parse(raw).body
            #expect(raw.hasPrefix("HTTP/1.1 200 OK"), "\(raw.debugDescription)")
            #expect(echoed.contains("\r\nX-Forwarded-For: ::1\r\n"), "\(echoed.debugDescription)")
            #expect(
                echoed.contains("\r\nForwarded: for=\"[::1]\";proto=http;host=\"x\"\r\n"), "\(echoed.debugDescription)")
        } catch {
            await proxy.stop()
            throw error
        }
        await proxy.stop()
    }

    @Test func framerDecisions() {
        var buffer = ByteBuffer()
        var framer = ResponseFramer()
        #expect(!framer.start(status: .ok, hasContentLength: false, method: .GET, version: .http1_1, into: &buffer))
        #expect(framer.framing == .chunked && framer.terminator != nil)
        #expect(framer.start(status: .ok, hasContentLength: false, method: .GET, version: .http1_0, into: &buffer))
        #expect(framer.framing == .close && framer.terminator == nil)
        _ = framer.start(status: .notModified, hasContentLength: true, method: .GET, version: .http1_1, into: &buffer)
        #expect(framer.framing == .none && framer.dropsFramingHeader("Content-Length") && !framer.writesBody)
        _ = framer.start(status: .ok, hasContentLength: true, method: .HEAD, version: .http1_1, into: &buffer)
        #expect(framer.framing == .contentLength && !framer.writesBody && !framer.dropsFramingHeader("content-length"))
        _ = framer.start(status: .ok, hasContentLength: false, method: .HEAD, version: .http1_1, into: &buffer)
        #expect(framer.framing == .chunked && framer.terminator == nil, "no last chunk without a body")
    }
}

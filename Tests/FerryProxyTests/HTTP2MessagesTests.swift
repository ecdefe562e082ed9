import NIOCore
import NIOHPACK
import NIOHTTP1
import Testing

@testable import FerryProxy

/// The meaning of an HTTP/2 header block for the exchange and the HTTP/1.1 backend (the block's
/// syntax is swift-nio-http2's to check), and the response block for the client.
@Suite struct HTTP2MessagesTests {
    func block(_ extra: [(String, String)], method: String = "GET", authority: String? = "a.example") -> HPACKHeaders {
        var headers: HPACKHeaders = [":method": method, ":scheme": "https", ":path": "/p?q"]
        if let authority { headers.add(name: ":authority", value: authority) }
        for (name, value) in extra { headers.add(name: name, value: value) }
        return headers
    }

    func request(_ block: HPACKHeaders, endStream: Bool = true) throws -> ExchangeRequest {
        switch HTTP2Messages.request(block, endStream: endStream) {
        case .success(let request): return request
        case .failure(let refusal): throw refusal
        }
    }

    @Test func authorityBecomesHostAndAConflictingHostIsRefused() throws {
        let plain = try request(block([("accept", "*/*")]))
        #expect(plain.first(name: "host") == "a.example")
        #expect(plain.method == .GET && plain.uri == "/p?q" && plain.version.major == 2)
        #expect(plain.facts.hosts == 1)
        let same = try request(block([("host", "A.example")]))
        #expect(same.values(name: "host") == ["A.example"])
        guard case .failure(let refusal) = HTTP2Messages.request(block([("host", "b.example")]), endStream: true)
        else {
            Issue.record("a Host other than :authority was accepted")
            return
        }
        #expect(refusal.status == .badRequest)
        // No :authority: the Host header is the request's host.
        let hostOnly = try request(block([("host", "c.example")], authority: nil))
        #expect(hostOnly.first(name: "host") == "c.example")
    }

    @Test func splitCookiesAreJoinedForHTTP1() throws {
        let joined = try request(block([("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2")]))
        #expect(joined.values(name: "cookie") == ["a=1; b=2"])
        #expect(RequestRules.cookie(named: "b", in: joined.values(name: "cookie")) == "2")
    }

    @Test func aBodyWithoutLengthGoesUpstreamChunked() throws {
        let bodyless = try request(block([]), endStream: true)
        #expect(!bodyless.facts.announcesBody)
        let streamed = try request(block([], method: "POST"), endStream: false)
        #expect(streamed.facts.encodings == 1 && streamed.facts.lastEncodingIsChunked)
        #expect(streamed.facts.framingRejection(version: streamed.version, maxBodyBytes: 10) == nil)
        var out = ByteBuffer()
        let framing = RequestRules.writeUpstreamRequest(
            streamed.head, facts: streamed.facts, uri: streamed.uri, clientAddress: "192.0.2.1", tls: true,
            into: &out)
        #expect(framing == .chunked)
        let text = String(buffer: out)
        #expect(text.hasPrefix("POST /p?q HTTP/1.1\r\n"))
        #expect(text.contains("Transfer-Encoding: chunked\r\n") || text.contains("transfer-encoding: chunked\r\n"))
        let sized = try request(block([("content-length", "5")], method: "POST"), endStream: false)
        #expect(sized.facts.encodings == 0 && sized.facts.length == "5")
        #expect(sized.facts.framingRejection(version: sized.version, maxBodyBytes: 4) == .bodyTooLarge)
    }

    @Test func anExtendedConnectIsAWebSocketWithoutAnUpgradeHeader() throws {
        var headers: HPACKHeaders = [
            ":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": "/ws", ":authority": "a",
        ]
        headers.add(name: "sec-websocket-version", value: "13")
        let connect = try request(headers, endStream: false)
        #expect(connect.method == .CONNECT)
        #expect(connect.extendedConnectProtocol == "websocket")
        // Not through Upgrade (no key: the stream is the handshake), but a WebSocket all the same.
        #expect(!connect.facts.upgradeListsWebSocket)
        #expect(connect.facts.upgradeKind(connect) == .websocket)
        // The stream carries the tunnel: no body framing is made up for the backend.
        #expect(connect.facts.encodings == 0 && !connect.facts.announcesBody)
        headers.replaceOrAdd(name: "sec-websocket-version", value: "8")
        let old = try request(headers, endStream: false)
        #expect(old.facts.upgradeKind(old) != .websocket && old.facts.upgradeKind(old) != .none)
        headers.replaceOrAdd(name: "sec-websocket-version", value: "13")
        headers.replaceOrAdd(name: ":protocol", value: "chat")
        let other = try request(headers, endStream: false)
        #expect(other.facts.upgradeKind(other) != .websocket && other.facts.upgradeKind(other) != .none)
    }

    @Test func responseHeadersLoseTheHopAndAreLowercase() throws {
        let text =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\n\r\n"
        let bytes = ByteBuffer(string: text)
        guard case .complete(let parsed, _) = HTTP1HeadParser.parseResponse(bytes) else {
            Issue.record("the response head did not parse")
            return
        }
        let head = try UpstreamResponseHead(bytes: bytes, head: parsed)
        let block = HTTP2Messages.responseHeaders(head, extraHeader: ("Set-Cookie", "srv=2"), dropContentLength: false)
        #expect(Array(block.map { $0.name }) == [":status", "content-type", "set-cookie", "set-cookie"])
        #expect(block[":status"] == ["200"])
        #expect(block["set-cookie"] == ["a=1", "srv=2"])
        let local = HTTP2Messages.responseHeaders(
            status: .notFound, headers: ["Server": "ferry", "Connection": "close", "Content-Length": "9"],
            bodyLength: 4)
        #expect(Array(local.map { $0.name }) == [":status", "server", "content-length"])
        #expect(local["content-length"] == ["4"])
    }
}

import FerryConfig
import NIOHTTP1
import Testing

@testable import FerryProxy

@Suite struct RequestRulesTests {
    func head(_ method: HTTPMethod = .GET, _ headers: [(String, String)], version: HTTPVersion = .http1_1)
        -> HTTPRequestHead
    {
        var all = HTTPHeaders(headers)
        if !headers.contains(where: { $0.0.lowercased() == "host" }) { all.add(name: "Host", value: "x") }
        return HTTPRequestHead(version: version, method: method, uri: "/", headers: all)
    }

    @Test func contentLengthWithTransferEncodingIsRejected() {
        let rejection = RequestRules.checkFraming(
            head(.POST, [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]), maxBodyBytes: 100)
        #expect(rejection == .badRequest("both Content-Length and Transfer-Encoding"))
    }

    @Test func differingContentLengthsAreRejected() {
        #expect(
            RequestRules.checkFraming(
                head(.POST, [("Content-Length", "5"), ("Content-Length", "6")]), maxBodyBytes: 100)
                == .badRequest("differing Content-Length values"))
        #expect(RequestRules.checkFraming(head(.POST, [("Content-Length", "5, 6")]), maxBodyBytes: 100) != nil)
        #expect(
            RequestRules.checkFraming(
                head(.POST, [("Content-Length", "5"), ("Content-Length", "5")]), maxBodyBytes: 100) == nil)
    }

    @Test func transferEncodingOtherThanChunkedIsRejected() {
        #expect(RequestRules.checkFraming(head(.POST, [("Transfer-Encoding", "gzip")]), maxBodyBytes: 100) != nil)
        #expect(
            RequestRules.checkFraming(head(.POST, [("Transfer-Encoding", "chunked, gzip")]), maxBodyBytes: 100) != nil)
        #expect(RequestRules.checkFraming(head(.POST, [("Transfer-Encoding", "chunked")]), maxBodyBytes: 100) == nil)
        #expect(
            RequestRules.checkFraming(
                head(.POST, [("Transfer-Encoding", "chunked")], version: .http1_0), maxBodyBytes: 100)
                != nil)
    }

    @Test func invalidContentLengthAndBodyCap() {
        #expect(
            RequestRules.checkFraming(head(.POST, [("Content-Length", "+5")]), maxBodyBytes: 100)
                == .badRequest("invalid Content-Length"))
        #expect(RequestRules.checkFraming(head(.POST, [("Content-Length", "101")]), maxBodyBytes: 100) == .bodyTooLarge)
    }

    @Test func hostIsRequiredOnceInHTTP11() {
        let noHost = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: [:])
        #expect(RequestRules.checkFraming(noHost, maxBodyBytes: 1) != nil)
        #expect(RequestRules.checkFraming(head(.GET, [("Host", "a"), ("Host", "b")]), maxBodyBytes: 1) != nil)
    }

    @Test func headerLimits() {
        let many = head(.GET, (0..<20).map { ("X-\($0)", "v") })
        #expect(RequestRules.checkLimits(many, maxHeaderBytes: 100_000, maxHeaderCount: 10) != nil)
        let big = head(.GET, [("X-Big", String(repeating: "a", count: 5000))])
        #expect(RequestRules.checkLimits(big, maxHeaderBytes: 4096, maxHeaderCount: 100)?.status.code == 431)
        #expect(RequestRules.checkLimits(big, maxHeaderBytes: 8192, maxHeaderCount: 100) == nil)
    }

    @Test func upgradeDetection() {
        let valid: [(String, String)] = [
            ("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ]
        #expect(RequestRules.upgradeKind(head(.GET, valid)) == .websocket)
        #expect(RequestRules.upgradeKind(head(.GET, [])) == .none)
        #expect(RequestRules.upgradeKind(head(.POST, valid)) != .websocket)
        // Other protocols are ignored (served as HTTP/1.1), a WebSocket one without Connection: upgrade is not.
        #expect(RequestRules.upgradeKind(head(.GET, [("Connection", "Upgrade"), ("Upgrade", "h2c")])) == .none)
        #expect(RequestRules.upgradeKind(head(.GET, [("Upgrade", "websocket")])) != .websocket)
        #expect(RequestRules.upgradeKind(head(.GET, [("Upgrade", "websocket")])) != .none)
        let noKey = valid.filter { $0.0 != "Sec-WebSocket-Key" }
        #expect(RequestRules.upgradeKind(head(.GET, noKey)) != .websocket)
        let badVersion = valid.map { $0.0 == "Sec-WebSocket-Version" ? ($0.0, "8") : $0 }
        #expect(RequestRules.upgradeKind(head(.GET, badVersion)) != .websocket)
        // A body would be frames to one side and content to the other.
        #expect(RequestRules.upgradeKind(head(.GET, valid + [("Content-Length", "5")])) != .websocket)
        #expect(RequestRules.upgradeKind(head(.GET, valid + [("Transfer-Encoding", "chunked")])) != .websocket)
        #expect(RequestRules.upgradeKind(head(.GET, valid + [("Content-Length", "0")])) == .websocket)
    }

    @Test func upstreamHeadDropsHopByHopAndAddsForwarding() {
        let request = head(
            .GET,
            [
                ("Host", "example.org"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "5"),
                ("TE", "trailers"), ("X-Forwarded-For", "10.0.0.1"), ("Accept", "*/*"),
            ])
        let upstream = RequestRules.upstreamHead(
            request, uri: "/x", clientAddress: "127.0.0.1", tls: true, upgrade: false)
        #expect(upstream.uri == "/x")
        #expect(upstream.headers["connection"].isEmpty)
        #expect(upstream.headers["x-secret"].isEmpty)
        #expect(upstream.headers["keep-alive"].isEmpty)
        #expect(upstream.headers["te"].isEmpty)
        #expect(upstream.headers.first(name: "host") == "example.org")
        #expect(upstream.headers.first(name: "x-forwarded-for") == "10.0.0.1, 127.0.0.1")
        #expect(upstream.headers.first(name: "x-forwarded-proto") == "https")
        #expect(upstream.headers.first(name: "x-forwarded-host") == "example.org")
        #expect(upstream.headers.first(name: "forwarded") == "for=127.0.0.1;proto=https;host=\"example.org\"")
        #expect(upstream.headers.first(name: "accept") == "*/*")
    }

    @Test func upstreamHeadForAnUpgradeKeepsTheUpgradeHeaders() {
        let request = head(
            .GET,
            [
                ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ])
        let upstream = RequestRules.upstreamHead(request, uri: "/tts", clientAddress: nil, tls: false, upgrade: true)
        #expect(upstream.headers.first(name: "upgrade") == "websocket")
        #expect(upstream.headers.first(name: "connection") == "Upgrade")
        #expect(upstream.headers.first(name: "sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ==")
    }

    @Test func chunkedRequestBodiesStayChunkedUpstream() {
        let request = head(.POST, [("Transfer-Encoding", "chunked")])
        let upstream = RequestRules.upstreamHead(request, uri: "/", clientAddress: nil, tls: false, upgrade: false)
        #expect(upstream.headers.first(name: "transfer-encoding") == "chunked")
    }

    @Test func idempotentMethods() {
        #expect(RequestRules.isIdempotent(.GET))
        #expect(RequestRules.isIdempotent(.PUT))
        #expect(!RequestRules.isIdempotent(.POST))
        #expect(!RequestRules.isIdempotent(.PATCH))
    }
}

/// One test per rule of the reuse decision.
@Suite struct ExchangeOutcomeTests {
    var clean: ExchangeOutcome {
        var outcome = ExchangeOutcome()
        outcome.requestFullySent = true
        outcome.responseComplete = true
        outcome.status = 200
        return outcome
    }

    @Test func aCleanExchangeIsReusable() {
        #expect(clean.closeReason(maxRequestsPerConnection: 100) == nil)
    }

    @Test func requestNotFullySent() {
        var outcome = clean
        outcome.requestFullySent = false
        #expect(outcome.closeReason(maxRequestsPerConnection: 100) == .notReusableFraming)
    }

    @Test func responseNotComplete() {
        var outcome = clean
        outcome.responseComplete = false
        #expect(outcome.closeReason(maxRequestsPerConnection: 100) == .notReusableFraming)
    }

    @Test func responseDelimitedByClose() {
        var outcome = clean
        outcome.responseDelimitedByClose = true
        #expect(outcome.closeReason(maxRequestsPerConnection: 100) == .notReusableFraming)
    }

    @Test func backendSaidClose() {
        var outcome = clean
        outcome.backendKeepAlive = false
        #expect(outcome.closeReason(maxRequestsPerConnection: 100) == .backendClose)
    }

    @Test func switchingProtocolsIsNeverReused() {
        var outcome = clean
        outcome.status = 101
        #expect(outcome.closeReason(maxRequestsPerConnection: 100) == .upgraded)
    }

    @Test func bytesAfterTheResponse() {
        var outcome = clean
        outcome.unexpectedData = true
        #expect(outcome.closeReason(maxRequestsPerConnection: 100) == .unexpectedData)
    }

    @Test func errorOrTimeout() {
        var failed = clean
        failed.failed = true
        #expect(failed.closeReason(maxRequestsPerConnection: 100) == .error)
        var timedOut = clean
        timedOut.timedOut = true
        #expect(timedOut.closeReason(maxRequestsPerConnection: 100) == .error)
    }

    @Test func maxRequestsPerConnection() {
        var outcome = clean
        outcome.requestsServed = 3
        #expect(outcome.closeReason(maxRequestsPerConnection: 3) == .maxRequests)
        #expect(outcome.closeReason(maxRequestsPerConnection: 4) == nil)
    }
}
